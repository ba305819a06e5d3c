import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LibvirtConnectionError, LibvirtError, LibvirtTimeoutError } from '../../../src/libvirt/rpc/errors.js';
import { MessageType } from '../../../src/libvirt/rpc/packet.js';
import { KEEPALIVE_PROGRAM, KeepaliveProc, Proc, REMOTE_PROGRAM } from '../../../src/libvirt/rpc/remote_protocol.js';
import { RpcTransport } from '../../../src/libvirt/rpc/transport.js';
import { XdrReader, XdrWriter } from '../../../src/libvirt/rpc/xdr.js';
import { FakeLibvirtd, remoteError, type FakeConnection } from './fake_libvirtd.js';
import type { Packet } from '../../../src/libvirt/rpc/packet.js';

const ECHO_PROC = 1000;

async function setup(t: import('node:test').TestContext) {
  const fake = await FakeLibvirtd.start();
  const transport = await RpcTransport.connect({ socketPath: fake.socketPath, connectTimeoutMs: 2_000 });
  t.after(async () => {
    transport.close();
    await fake.dispose();
  });
  return { fake, transport };
}

function call(transport: RpcTransport, proc: number, value: number, timeoutMs = 5_000): Promise<number> {
  return transport
    .call(REMOTE_PROGRAM, 1, proc, new XdrWriter().int(value).finish(), timeoutMs)
    .then((payload) => new XdrReader(payload).int());
}

function argOf(call: Packet): number {
  return new XdrReader(call.payload).int();
}

test('connecting to a socket nobody listens on fails with LibvirtConnectionError', async () => {
  await assert.rejects(
    RpcTransport.connect({ socketPath: '/nonexistent/vmlet/libvirt-sock', connectTimeoutMs: 1_000 }),
    LibvirtConnectionError,
  );
});

test('many calls in flight, answered in reverse order, each get their own reply by serial', async (t) => {
  const { fake, transport } = await setup(t);
  const held: { call: Packet; conn: FakeConnection }[] = [];
  const n = 50;
  fake.onCall = (c, conn) => {
    held.push({ call: c, conn });
    if (held.length === n) {
      for (const h of held.reverse()) h.conn.reply(h.call, new XdrWriter().int(argOf(h.call) * 2).finish());
    }
    return true;
  };
  const results = await Promise.all(Array.from({ length: n }, (_, i) => call(transport, ECHO_PROC, i)));
  assert.deepEqual(
    results,
    Array.from({ length: n }, (_, i) => i * 2),
  );
  const serials = fake.lastConnection.calls.map((c) => c.header.serial);
  assert.equal(new Set(serials).size, n, 'every call has a distinct serial');
  assert.equal(transport.pendingCalls, 0);
});

test('replies split across socket writes and several replies in one write are all matched', async (t) => {
  const { fake, transport } = await setup(t);
  const held: { call: Packet; conn: FakeConnection }[] = [];
  fake.onCall = (c, conn) => {
    held.push({ call: c, conn });
    if (held.length === 3) {
      const bytes = Buffer.concat(held.map((h) => h.conn.replyPacket(h.call, new XdrWriter().int(argOf(h.call) + 100).finish())));
      // first write: two whole replies and 5 bytes of the third; then the rest a byte at a time
      conn.write(bytes.subarray(0, 2 * 32 + 5));
      let at = 2 * 32 + 5;
      const drip = setInterval(() => {
        conn.write(bytes.subarray(at, at + 1));
        at++;
        if (at >= bytes.length) clearInterval(drip);
      }, 1);
    }
    return true;
  };
  const results = await Promise.all([call(transport, ECHO_PROC, 1), call(transport, ECHO_PROC, 2), call(transport, ECHO_PROC, 3)]);
  assert.deepEqual(results, [101, 102, 103]);
});

test('an error reply rejects only its own call, with the libvirt error code', async (t) => {
  const { fake, transport } = await setup(t);
  fake.onCall = (c, conn) => {
    if (argOf(c) === 13) conn.replyError(c, remoteError(42, 'Domain not found'));
    else conn.reply(c, new XdrWriter().int(argOf(c)).finish());
    return true;
  };
  const [bad, good] = await Promise.allSettled([call(transport, ECHO_PROC, 13), call(transport, ECHO_PROC, 14)]);
  assert.equal(bad.status, 'rejected');
  assert.ok(bad.status === 'rejected' && bad.reason instanceof LibvirtError);
  assert.equal((bad as PromiseRejectedResult).reason.virCode, 42);
  assert.equal((bad as PromiseRejectedResult).reason.procedure, ECHO_PROC);
  assert.deepEqual(good, { status: 'fulfilled', value: 14 });
});

test('a call without a reply times out; the connection stays usable and the late reply is dropped', async (t) => {
  const { fake, transport } = await setup(t);
  let slow: { c: Packet; conn: FakeConnection } | undefined;
  fake.onCall = (c, conn) => {
    if (argOf(c) === 1) slow = { c, conn };
    else conn.reply(c, new XdrWriter().int(argOf(c)).finish());
    return true;
  };
  const started = Date.now();
  await assert.rejects(call(transport, ECHO_PROC, 1, 100), LibvirtTimeoutError);
  assert.ok(Date.now() - started < 1_000);
  assert.ok(slow);
  slow.conn.reply(slow.c, new XdrWriter().int(999).finish()); // late
  assert.equal(await call(transport, ECHO_PROC, 2), 2);
  assert.equal(transport.isClosed, false);
});

test('when the daemon drops the connection every pending call fails with LibvirtConnectionError and close listeners run', async (t) => {
  const { fake, transport } = await setup(t);
  let calls = 0;
  fake.onCall = (_c, conn) => {
    if (++calls === 3) conn.destroy();
    return true;
  };
  const closed = new Promise<Error>((resolve) => transport.onClose(resolve));
  const results = await Promise.allSettled([1, 2, 3].map((v) => call(transport, ECHO_PROC, v)));
  for (const r of results) {
    assert.equal(r.status, 'rejected');
    assert.ok((r as PromiseRejectedResult).reason instanceof LibvirtConnectionError);
  }
  assert.ok((await closed) instanceof LibvirtConnectionError);
  assert.ok(transport.isClosed);
  await assert.rejects(call(transport, ECHO_PROC, 4), LibvirtConnectionError);
});

test('garbage on the socket is a protocol error that closes the connection', async (t) => {
  const { fake, transport } = await setup(t);
  fake.onCall = (_c, conn) => {
    conn.write(Buffer.from('00000005deadbeef', 'hex'));
    return true;
  };
  await assert.rejects(call(transport, ECHO_PROC, 1), (err: Error) => err instanceof LibvirtConnectionError && /protocol error/.test(err.message));
  assert.ok(transport.isClosed);
});

test('asynchronous messages reach listeners; keepalive pings are answered with pongs', async (t) => {
  const { fake, transport } = await setup(t);
  const messages: number[] = [];
  transport.onMessage((h) => messages.push(h.procedure));
  fake.onCall = (c, conn) => {
    conn.message(Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE, Buffer.alloc(0));
    conn.message(KeepaliveProc.PING, Buffer.alloc(0), KEEPALIVE_PROGRAM);
    conn.reply(c, new XdrWriter().int(0).finish());
    return true;
  };
  await call(transport, ECHO_PROC, 0);
  assert.deepEqual(messages, [Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE], 'keepalive is not handed to listeners');
  const conn = fake.lastConnection;
  for (let i = 0; i < 50 && !conn.calls.some((c) => c.header.program === KEEPALIVE_PROGRAM); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  const pong = conn.calls.find((c) => c.header.program === KEEPALIVE_PROGRAM);
  assert.ok(pong, 'a pong was sent');
  assert.equal(pong.header.procedure, KeepaliveProc.PONG);
  assert.equal(pong.header.type, MessageType.MESSAGE);
});

test('a call packet on the wire carries program, version, procedure, CALL type and status OK', async (t) => {
  const { fake, transport } = await setup(t);
  fake.onCall = (c, conn) => {
    conn.reply(c, new XdrWriter().int(1).finish());
    return true;
  };
  await call(transport, 4242, 7);
  const sent = fake.lastConnection.calls[0]!;
  assert.deepEqual(sent.header, { program: REMOTE_PROGRAM, version: 1, procedure: 4242, type: MessageType.CALL, serial: sent.header.serial, status: 0 });
  assert.equal(argOf(sent), 7);
});
