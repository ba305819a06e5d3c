import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '../../../src/errors.js';
import {
  DomainEvent,
  LibvirtClient,
  LibvirtConnectionError,
  isNoDomain,
  type LifecycleEvent,
} from '../../../src/libvirt/client.js';
import { decodePacket } from '../../../src/libvirt/rpc/packet.js';
import { AuthType, Proc, readDomain, readOptionalString } from '../../../src/libvirt/rpc/remote_protocol.js';
import { XdrReader, XdrWriter } from '../../../src/libvirt/rpc/xdr.js';
import { FakeLibvirtd, remoteError } from './fake_libvirtd.js';

const recorded = JSON.parse(
  readFileSync(new URL('./fixtures/libvirtd-9.0-packets.json', import.meta.url), 'utf8'),
) as Record<string, string>;
const recordedPayload = (name: string): Buffer => decodePacket(Buffer.from(recorded[name]!, 'hex')).payload;
const recordedRaw = (name: string): Buffer => Buffer.from(recorded[name]!, 'hex');
const dom = { name: 'vmlet-test-capture', uuid: '8e1c3b6a-5a0e-4c44-9b7e-1f2a3b4c5d6e', id: 1 };

async function setup(t: import('node:test').TestContext, prepare?: (fake: FakeLibvirtd) => void) {
  const fake = await FakeLibvirtd.start();
  prepare?.(fake);
  const client = await LibvirtClient.connect({ socketPath: fake.socketPath, callTimeoutMs: 2_000 });
  t.after(async () => {
    await client.close();
    await fake.dispose();
  });
  return { fake, client };
}

test('handshake: auth-list then connect-open with the URI', async (t) => {
  const { fake } = await setup(t);
  const calls = fake.lastConnection.calls;
  assert.deepEqual(
    calls.map((c) => c.header.procedure),
    [Proc.AUTH_LIST, Proc.CONNECT_OPEN],
  );
  const r = new XdrReader(calls[1]!.payload);
  assert.equal(readOptionalString(r), 'qemu:///system');
  assert.equal(r.uint(), 0);
  r.end();
});

test('handshake with polkit-only auth calls auth-polkit', async (t) => {
  const { fake } = await setup(t, (f) => {
    f.authTypes = [AuthType.POLKIT];
  });
  assert.deepEqual(
    fake.lastConnection.calls.map((c) => c.header.procedure),
    [Proc.AUTH_LIST, Proc.AUTH_POLKIT, Proc.CONNECT_OPEN],
  );
});

test('a daemon that wants SASL, or refuses connect-open, gives LibvirtConnectionError and no open socket', async (t) => {
  const fake = await FakeLibvirtd.start();
  t.after(() => fake.dispose());
  fake.authTypes = [AuthType.SASL];
  await assert.rejects(LibvirtClient.connect({ socketPath: fake.socketPath }), LibvirtConnectionError);
  fake.authTypes = [AuthType.NONE];
  fake.onCall = (c, conn) => {
    if (c.header.procedure !== Proc.CONNECT_OPEN) return false;
    conn.replyError(c, remoteError(38, 'no connection driver available for bogus:///'));
    return true;
  };
  await assert.rejects(
    LibvirtClient.connect({ socketPath: fake.socketPath, uri: 'bogus:///' }),
    (err: Error) => err instanceof LibvirtConnectionError && /no connection driver/.test(err.message),
  );
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(fake.connections.every((c) => c.socket.destroyed || c.socket.readyState !== 'open'), 'failed handshakes leave no socket open');
});

test('recorded replies decode: getInfo with bigint memory and cpu time, getState, memoryStats', async (t) => {
  const { fake, client } = await setup(t);
  fake.onCall = (c, conn) => {
    const name = { [Proc.DOMAIN_GET_INFO]: 'getInfoReply', [Proc.DOMAIN_GET_STATE]: 'getStateReply', [Proc.DOMAIN_MEMORY_STATS]: 'memoryStatsReply' }[
      c.header.procedure
    ];
    if (!name) return false;
    conn.reply(c, recordedPayload(name));
    return true;
  };
  assert.deepEqual(await client.getInfo(dom), { state: 1, maxMemKiB: 32768n, memoryKiB: 32768n, nrVirtCpu: 1, cpuTimeNs: 360_000_000n });
  assert.deepEqual(await client.getState(dom), { state: 1, reason: 1 });
  assert.deepEqual(await client.memoryStats(dom), { actualBalloon: 32768n, lastUpdate: 0n, rss: 39824n });
  const getInfoCall = fake.lastConnection.calls.find((c) => c.header.procedure === Proc.DOMAIN_GET_INFO)!;
  assert.deepEqual(readDomain(new XdrReader(getInfoCall.payload)), dom);
});

test('a "no domain" error keeps libvirt code 42 and is recognised by isNoDomain', async (t) => {
  const { fake, client } = await setup(t);
  fake.onCall = (c, conn) => {
    if (c.header.procedure !== Proc.DOMAIN_LOOKUP_BY_NAME) return false;
    conn.replyError(c, remoteError(42, "Domain not found: no domain with matching name 'x'"));
    return true;
  };
  const err = await client.lookupByName('x').catch((e: unknown) => e);
  assert.ok(isNoDomain(err));
});

test('qemuAgentCommand: the qemu program (0x20008087) procedure 3 with domain, command, timeout, flags; the reply string; agent errors keep their code', async (t) => {
  const { fake, client } = await setup(t);
  const seen: { program: number; version: number; name: string; command: string; timeout: number; flags: number }[] = [];
  fake.onCall = (c, conn) => {
    if (c.header.program !== 0x20008087) return false;
    const r = new XdrReader(c.payload);
    const d = readDomain(r);
    seen.push({ program: c.header.program, version: c.header.version, name: d.name, command: r.string(1 << 22), timeout: r.int(), flags: r.uint() });
    if (seen.length === 2) conn.replyError(c, remoteError(86, 'Guest agent is not responding: QEMU guest agent is not connected'));
    else conn.reply(c, new XdrWriter().optional('{"return":{}}', (w, v) => w.string(v, 1 << 22)).finish());
    return true;
  };
  assert.equal(await client.qemuAgentCommand(dom, '{"execute":"guest-ping"}', 5), '{"return":{}}');
  const err = (await client.qemuAgentCommand(dom, '{"execute":"guest-ping"}', 5).catch((e: unknown) => e)) as { virCode?: number };
  assert.equal(err.virCode, 86);
  assert.deepEqual(seen[0], { program: 0x20008087, version: 1, name: dom.name, command: '{"execute":"guest-ping"}', timeout: 5, flags: 0 });
  await assert.rejects(client.qemuAgentCommand(dom, '', 5), InvalidArgumentError);
  await assert.rejects(client.qemuAgentCommand(dom, '{}', -3), InvalidArgumentError);
});

test('lifecycle events: registration for the LIFECYCLE id on all domains, then recorded event messages reach handlers', async (t) => {
  const { fake, client } = await setup(t);
  const seen: LifecycleEvent[] = [];
  const unsubscribe = await client.onLifecycle((ev) => seen.push(ev));
  const reg = fake.lastConnection.calls.find((c) => c.header.procedure === Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY)!;
  const r = new XdrReader(reg.payload);
  assert.equal(r.int(), 0, 'event id LIFECYCLE');
  assert.equal(r.bool(), false, 'no domain filter');
  r.end();
  fake.lastConnection.write(Buffer.concat([recordedRaw('lifecycleStartedMessage'), recordedRaw('lifecycleStoppedDestroyedMessage')]));
  await client.ping(); // the reply comes after the events on the same socket
  assert.deepEqual(seen, [
    { domain: dom, event: DomainEvent.STARTED, detail: 0 },
    { domain: { ...dom, id: -1 }, event: DomainEvent.STOPPED, detail: 1 },
  ]);
  unsubscribe();
  fake.lastConnection.write(recordedRaw('lifecycleStartedMessage'));
  await client.ping();
  assert.equal(seen.length, 2, 'no event after unsubscribe');
  // A second subscriber reuses the registration.
  await client.onLifecycle(() => {});
  assert.equal(fake.lastConnection.calls.filter((c) => c.header.procedure === Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY).length, 1);
});

test('a throwing lifecycle handler does not stop the others', async (t) => {
  const { fake, client } = await setup(t);
  const seen: number[] = [];
  await client.onLifecycle(() => {
    throw new Error('boom');
  });
  await client.onLifecycle((ev) => seen.push(ev.event));
  fake.lastConnection.write(recordedRaw('lifecycleStartedMessage'));
  await client.ping();
  assert.deepEqual(seen, [DomainEvent.STARTED]);
});

test('invalid arguments are refused (as rejections) before anything is sent', async (t) => {
  const { fake, client } = await setup(t);
  const before = fake.lastConnection.calls.length;
  await assert.rejects(client.lookupByName(''), InvalidArgumentError);
  await assert.rejects(client.lookupByName('a\0b'), InvalidArgumentError);
  await assert.rejects(client.lookupByUuid('../etc'), InvalidArgumentError);
  await assert.rejects(client.destroy({ name: 'x', uuid: 'nope', id: 1 }), InvalidArgumentError);
  await assert.rejects(client.undefine(dom, -1), InvalidArgumentError);
  await assert.rejects(client.setMemoryFlags(dom, 0n), InvalidArgumentError);
  await assert.rejects(client.setVcpusFlags(dom, 0), InvalidArgumentError);
  await assert.rejects(client.setSchedulerParametersFlags(dom, []), InvalidArgumentError);
  await assert.rejects(client.setSchedulerParametersFlags(dom, [{ field: 'x'.repeat(100), type: 'int', value: 1 }]), InvalidArgumentError);
  await assert.rejects(client.blockInfo(dom, 'vda', 2 ** 33), InvalidArgumentError);
  assert.equal(fake.lastConnection.calls.length, before);
});

test('close() says connect-close and ends the connection; close listeners run', async (t) => {
  const fake = await FakeLibvirtd.start();
  t.after(() => fake.dispose());
  const client = await LibvirtClient.connect({ socketPath: fake.socketPath });
  let closed = false;
  client.onClose(() => {
    closed = true;
  });
  await client.close();
  assert.equal(fake.lastConnection.calls.at(-1)!.header.procedure, Proc.CONNECT_CLOSE);
  assert.ok(client.isClosed);
  assert.ok(closed);
  await assert.rejects(client.ping(), LibvirtConnectionError);
});
