import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { InvalidArgumentError } from '../../../../src/errors.js';
import { Dhcp6MessageType, duidLl, encodeDhcp6Message } from '../../../../src/network/ipv6/dhcp6_packet.js';
import { Ipv6Responder, type RouterAdvertSink } from '../../../../src/network/ipv6/responder.js';
import { decodeRouterAdvert } from '../../../../src/network/ipv6/router_advert.js';

const config = {
  lease: { address: 'fd12:3456:789a:1::2', prefixLength: 64, dns: [], search: [], leaseSeconds: 3600 },
  serverDuid: duidLl('32:d3:d5:2d:a9:41'),
  advert: {
    curHopLimit: 64, managed: true, other: true, routerLifetime: 0, reachableTime: 0, retransTimer: 0,
    prefixes: [{ prefix: 'fd12:3456:789a:1::', length: 64, onLink: true, autonomous: false, validLifetime: 3600, preferredLifetime: 3600 }],
    routes: [],
  },
};

class RecordingSink implements RouterAdvertSink {
  readonly sent: { at: number; packet: Buffer }[] = [];
  closed = false;
  failNext = false;
  async send(packet: Buffer) {
    if (this.failNext) {
      this.failNext = false;
      throw new Error('ENETDOWN');
    }
    this.sent.push({ at: Date.now(), packet });
  }
  async close() {
    this.closed = true;
  }
}

async function boundSocket(): Promise<dgram.Socket> {
  const socket = dgram.createSocket({ type: 'udp6' });
  await new Promise<void>((r) => socket.bind(0, '::1', () => r()));
  return socket;
}

test('router advertisements go out at once, quickly at first, then slowly; close stops them and closes both sockets', async () => {
  const sink = new RecordingSink();
  const socket = await boundSocket();
  sink.failNext = true;
  const responder = new Ipv6Responder(socket, sink, config, { schedule: { initialCount: 3, initialIntervalMs: 30, intervalMs: 400, minDelayBetweenMs: 1000 } });
  await new Promise((r) => setTimeout(r, 250));
  // The first send failed (counted), two more at 30 ms, then the slow pace has not come round yet.
  assert.equal(sink.sent.length, 2);
  assert.deepEqual(decodeRouterAdvert(sink.sent[0]!.packet).prefixes[0]!.prefix, 'fd12:3456:789a:1::');
  const stats = responder.stats();
  assert.equal(stats.routerAdverts, 2);
  assert.equal(stats.routerAdvertErrors, 1);
  await responder.close();
  await responder.close();
  assert.equal(sink.closed, true);
  assert.throws(() => socket.address(), /Not running/);
  const count = sink.sent.length;
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(sink.sent.length, count, 'no advertisement after close');
});

test('malformed DHCPv6 datagrams are counted, not answered; a well-formed one brings an advertisement at once', async () => {
  const sink = new RecordingSink();
  const socket = await boundSocket();
  const responder = new Ipv6Responder(socket, sink, config, { schedule: { initialCount: 1, initialIntervalMs: 1000, intervalMs: 60_000, minDelayBetweenMs: 50 } });
  const client = await boundSocket();
  try {
    await new Promise<void>((r) => client.send(Buffer.from([12, 0, 0, 1]), socket.address().port, '::1', () => r()));
    await new Promise<void>((r) => client.send(Buffer.from([1]), socket.address().port, '::1', () => r()));
    for (let i = 0; i < 50 && responder.stats().malformed < 2; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(responder.stats().malformed, 2);
    assert.equal(responder.stats().replies + responder.stats().advertises, 0);
    assert.equal(sink.sent.length, 1, 'a malformed datagram brings no extra advertisement');
    // A client speaking DHCPv6 gets a router advertisement at once (not before the minimum delay).
    await new Promise((r) => setTimeout(r, 60));
    const infoRequest = encodeDhcp6Message({ type: Dhcp6MessageType.INFORMATION_REQUEST, transactionId: 1, options: [] });
    await new Promise<void>((r) => client.send(infoRequest, socket.address().port, '::1', () => r()));
    await new Promise<void>((r) => client.send(infoRequest, socket.address().port, '::1', () => r()));
    for (let i = 0; i < 50 && sink.sent.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(sink.sent.length, 2, 'one extra advertisement for two messages within the minimum delay');
  } finally {
    client.close();
    await responder.close();
  }
});

test('a bad configuration is refused before anything is taken over', async () => {
  const socket = await boundSocket();
  try {
    assert.throws(() => new Ipv6Responder(socket, new RecordingSink(), { ...config, lease: { ...config.lease, prefixLength: 0 } }), InvalidArgumentError);
    assert.equal(socket.listenerCount('message'), 0);
  } finally {
    socket.close();
  }
});
