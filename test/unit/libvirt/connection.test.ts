import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { LibvirtConnection } from '../../../src/libvirt/connection.js';
import { LibvirtConnectionError, type LifecycleEvent } from '../../../src/libvirt/client.js';
import { Proc } from '../../../src/libvirt/rpc/remote_protocol.js';
import { FakeLibvirtd } from './fake_libvirtd.js';

const recorded = JSON.parse(
  readFileSync(new URL('./fixtures/libvirtd-9.0-packets.json', import.meta.url), 'utf8'),
) as Record<string, string>;
const startedEvent = Buffer.from(recorded.lifecycleStartedMessage!, 'hex');

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('reconnects after the daemon restarts, registers for events again and announces each connection', async (t) => {
  const fake = await FakeLibvirtd.start();
  const conn = new LibvirtConnection({ socketPath: fake.socketPath, reconnectMinMs: 20, reconnectMaxMs: 100, aliveTimeoutMs: 500 });
  t.after(async () => {
    await conn.close();
    await fake.dispose();
  });
  const events: LifecycleEvent[] = [];
  let connects = 0;
  conn.onLifecycle((ev) => events.push(ev));
  conn.onConnected(() => connects++);

  await conn.whenConnected(2_000);
  assert.equal(await conn.isAlive(), true);
  fake.lastConnection.write(startedEvent);
  await until('first event', () => events.length === 1);

  await fake.stop();
  await until('disconnect noticed', async () => !(await conn.isAlive()));
  assert.throws(() => conn.current(), LibvirtConnectionError);
  // stays down for a few backoff rounds
  await new Promise((r) => setTimeout(r, 150));
  await fake.restart();
  await conn.whenConnected(2_000);
  assert.equal(await conn.isAlive(), true);
  assert.equal(connects, 2);
  const registrations = fake.lastConnection.calls.filter((c) => c.header.procedure === Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY);
  assert.equal(registrations.length, 1, 'the new connection registered for lifecycle events');
  fake.lastConnection.write(startedEvent);
  await until('event after reconnect', () => events.length === 2);
});

test('isAlive is false, within its time limit, when the daemon accepts but never answers', async (t) => {
  const fake = await FakeLibvirtd.start();
  const conn = new LibvirtConnection({ socketPath: fake.socketPath, aliveTimeoutMs: 200 });
  t.after(async () => {
    await conn.close();
    await fake.dispose();
  });
  await conn.whenConnected(2_000);
  fake.onCall = (c) => c.header.procedure === Proc.CONNECT_GET_LIB_VERSION; // swallow pings
  const started = Date.now();
  assert.equal(await conn.isAlive(), false);
  const took = Date.now() - started;
  assert.ok(took >= 150 && took < 1_000, `answered in ${took} ms`);
});

test('whenConnected rejects after its timeout while no daemon listens; close() stops retrying', async () => {
  const conn = new LibvirtConnection({ socketPath: '/nonexistent/vmlet/libvirt-sock', reconnectMinMs: 10, reconnectMaxMs: 20 });
  try {
    await assert.rejects(conn.whenConnected(150), LibvirtConnectionError);
    assert.equal(await conn.isAlive(), false);
  } finally {
    await conn.close();
  }
  await assert.rejects(conn.whenConnected(10), /closed/);
});
