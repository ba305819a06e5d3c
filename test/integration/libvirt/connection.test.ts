/**
 * LibvirtConnection across a real libvirtd restart. Runs only when the libvirtd was started by
 * the test helper (never restarts one started otherwise) and nobody else is connected to it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { LibvirtConnection } from '../../../src/libvirt/connection.js';
import { DomainEvent, LibvirtConnectionError, isNoDomain, type LifecycleEvent } from '../../../src/libvirt/client.js';
import { ensureLibvirtd, libvirtdClientCount, libvirtdStartedByTests, restartLibvirtdStartedByTests } from '../../helpers/libvirtd.js';

const runPrefix = `vmlet-test-${process.pid}-${randomUUID().slice(0, 6)}-`;

test('reconnects after libvirtd restarts, re-registers lifecycle events, isAlive follows', { timeout: 600_000 }, async (t) => {
  await ensureLibvirtd();
  if ((await libvirtdStartedByTests()) === undefined) {
    t.skip('libvirtd was not started by the test helper; it is not ours to restart');
    return;
  }
  // The helper's own probe connection may take a moment to disappear from the server's list.
  let others = await libvirtdClientCount();
  for (let i = 0; i < 20 && others > 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    others = await libvirtdClientCount();
  }
  if (others > 0) {
    t.skip(`${others} other client(s) connected to libvirtd; not restarting it under them`);
    return;
  }

  const conn = new LibvirtConnection({ reconnectMinMs: 50, reconnectMaxMs: 500, aliveTimeoutMs: 1_000, callTimeoutMs: 120_000 });
  const events: LifecycleEvent[] = [];
  let connects = 0;
  let lastConnectAt = 0;
  conn.onLifecycle((ev) => events.push(ev));
  conn.onConnected(() => {
    connects++;
    lastConnectAt = performance.now();
  });
  t.after(async () => {
    try {
      const client = await conn.whenConnected(60_000);
      for (const d of await client.listAllDomains()) {
        if (!d.name.startsWith(runPrefix)) continue;
        await client.destroy(d).catch(() => undefined);
        await client.undefine(d);
      }
      assert.deepEqual((await client.listAllDomains()).filter((d) => d.name.startsWith(runPrefix)), []);
    } finally {
      await conn.close();
    }
  });

  await conn.whenConnected(10_000);
  assert.equal(await conn.isAlive(), true);
  assert.equal(connects, 1);

  let downAt = 0;
  const restarted = await restartLibvirtdStartedByTests(async () => {
    downAt = performance.now();
    const s = performance.now();
    assert.equal(await conn.isAlive(), false, 'isAlive is false while libvirtd is down');
    assert.ok(performance.now() - s < 1_500, 'isAlive answers within its time limit');
    assert.throws(() => conn.current(), LibvirtConnectionError);
  });
  assert.equal(restarted, true);
  const client = await conn.whenConnected(30_000);
  assert.equal(connects, 2);
  t.diagnostic(`connected again ${(lastConnectAt - downAt).toFixed(0)} ms after the old libvirtd exited (includes the new one's startup)`);
  assert.equal(await conn.isAlive(), true);

  // Events reach the handler registered before the restart, through the new connection.
  const name = `${runPrefix}reconnect`;
  const dom = await client.defineXml(`<domain type='qemu'><name>${name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type></os><devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>`);
  const deadline = Date.now() + 5_000;
  while (!events.some((e) => e.domain.name === name && e.event === DomainEvent.DEFINED)) {
    if (Date.now() > deadline) assert.fail('no DEFINED event after reconnect');
    await new Promise((r) => setTimeout(r, 10));
  }
  await client.undefine(dom);
  assert.ok(isNoDomain(await client.lookupByName(name).catch((e: unknown) => e)));
});
