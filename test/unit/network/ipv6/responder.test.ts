import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../../../../src/errors.js';
import { DHCP6_CLIENT_PORT, Dhcp6MessageType, Dhcp6Option, decodeDhcp6Message, decodeIaNa, duidLl, encodeDhcp6Message, encodeIaNa, optionValue } from '../../../../src/network/ipv6/dhcp6_packet.js';
import { Ipv6Responder, type Datagram6, type RouterAdvertSink, type Udp6Socket } from '../../../../src/network/ipv6/responder.js';
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

/** The DHCPv6 socket's seam: datagrams are handed in by the test, sends recorded (or failed). */
class FakeUdp6Socket implements Udp6Socket {
  readonly sent: { packet: Buffer; to: { address: string; port: number; ifindex: number } }[] = [];
  closed = false;
  failSends = false;
  #onDatagram: ((d: Datagram6) => void) | undefined;
  receive(onDatagram: (d: Datagram6) => void) {
    assert.equal(this.#onDatagram, undefined, 'receive() twice');
    this.#onDatagram = onDatagram;
  }
  get receiving() {
    return this.#onDatagram !== undefined;
  }
  deliver(data: Buffer, from = { address: 'fe80::1:2', port: 546, ifindex: 70_001 }) {
    if (!this.closed) this.#onDatagram!({ data, ...from });
  }
  async send(packet: Buffer, to: { address: string; port: number; ifindex: number }) {
    if (this.failSends) throw Object.assign(new Error('sendto: Network is unreachable'), { code: 'ENETUNREACH' });
    this.sent.push({ packet, to });
  }
  async close() {
    this.closed = true;
  }
}

const settle = () => new Promise((r) => setImmediate(r));

test('router advertisements go out at once, quickly at first, then slowly; close stops them and closes both sockets', async () => {
  const sink = new RecordingSink();
  const socket = new FakeUdp6Socket();
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
  assert.equal(socket.closed, true);
  const count = sink.sent.length;
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(sink.sent.length, count, 'no advertisement after close');
});

test('malformed DHCPv6 datagrams are counted, not answered; a well-formed one brings an advertisement at once', async () => {
  const sink = new RecordingSink();
  const socket = new FakeUdp6Socket();
  const responder = new Ipv6Responder(socket, sink, config, { schedule: { initialCount: 1, initialIntervalMs: 1000, intervalMs: 60_000, minDelayBetweenMs: 50 } });
  try {
    socket.deliver(Buffer.from([12, 0, 0, 1]));
    socket.deliver(Buffer.from([1]));
    await settle();
    assert.equal(responder.stats().malformed, 2);
    assert.equal(responder.stats().replies + responder.stats().advertises, 0);
    assert.equal(socket.sent.length, 0);
    assert.equal(sink.sent.length, 1, 'a malformed datagram brings no extra advertisement');
    // A client speaking DHCPv6 gets a router advertisement at once (not before the minimum delay).
    await new Promise((r) => setTimeout(r, 60));
    const infoRequest = encodeDhcp6Message({ type: Dhcp6MessageType.INFORMATION_REQUEST, transactionId: 1, options: [] });
    socket.deliver(infoRequest);
    socket.deliver(infoRequest);
    await settle();
    assert.equal(sink.sent.length, 2, 'one extra advertisement for two messages within the minimum delay');
  } finally {
    await responder.close();
  }
});

test('a SOLICIT is answered to its source address on port 546, scoped by the device it arrived on; a failed send is counted', async () => {
  const socket = new FakeUdp6Socket();
  const responder = new Ipv6Responder(socket, new RecordingSink(), config, { schedule: { initialCount: 1, initialIntervalMs: 1000, intervalMs: 60_000, minDelayBetweenMs: 1000 } });
  try {
    const solicit = encodeDhcp6Message({
      type: Dhcp6MessageType.SOLICIT, transactionId: 0x42,
      options: [{ code: Dhcp6Option.CLIENTID, value: duidLl('02:00:00:00:00:07') }, { code: Dhcp6Option.IA_NA, value: encodeIaNa({ iaid: 1, t1: 0, t2: 0, addresses: [] }) }],
    });
    socket.deliver(solicit, { address: 'fe80::7', port: 546, ifindex: 123_456 });
    await settle();
    assert.equal(socket.sent.length, 1);
    assert.deepEqual(socket.sent[0]!.to, { address: 'fe80::7', port: DHCP6_CLIENT_PORT, ifindex: 123_456 });
    const advertise = decodeDhcp6Message(socket.sent[0]!.packet);
    assert.equal(advertise.type, Dhcp6MessageType.ADVERTISE);
    assert.equal(advertise.transactionId, 0x42);
    assert.equal(decodeIaNa(optionValue(advertise, Dhcp6Option.IA_NA)!).addresses[0]!.address, config.lease.address);
    assert.equal(responder.stats().advertises, 1);
    socket.failSends = true;
    socket.deliver(solicit, { address: 'fe80::7', port: 546, ifindex: 123_456 });
    await settle();
    assert.equal(responder.stats().sendErrors, 1);
    assert.equal(responder.stats().advertises, 1);
  } finally {
    await responder.close();
  }
  assert.equal(socket.closed, true);
  // Nothing is handled after close.
  const before = responder.stats();
  socket.closed = false;
  socket.deliver(Buffer.from([1]));
  assert.deepEqual(responder.stats(), before);
});

test('a bad configuration is refused before anything is taken over', () => {
  const socket = new FakeUdp6Socket();
  assert.throws(() => new Ipv6Responder(socket, new RecordingSink(), { ...config, lease: { ...config.lease, prefixLength: 0 } }), InvalidArgumentError);
  assert.equal(socket.receiving, false);
  assert.equal(socket.closed, false);
});
