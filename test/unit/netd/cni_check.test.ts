/**
 * CNI CHECK against the fake host: a status with `check` runs CHECK of every network with the
 * config and result its ADD cached; a failing CHECK shows in the status (and is logged as a
 * warning); a verbose status reuses a report younger than CNI_CHECK_MIN_AGE_MS and runs one CHECK
 * for concurrent calls; --cni-check-interval runs it on its own; a network before 0.4.0 is reported skipped.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.js';
import { silentLogger, type Logger } from '../../../src/log.js';
import { NetworkManager } from '../../../src/netd/manager.js';
import { CNI_CHECK_MIN_AGE_MS } from '../../../src/netd/cni_check_cache.js';
import { FakeHost } from './fake_host.js';

function start(t: TestContext, cniVersion: string, flags: Record<string, string> = {}, logger: Logger = silentLogger) {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-netd-check-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const confDir = join(dir, 'cni');
  mkdirSync(confDir);
  writeFileSync(join(confDir, '10-podnet.conflist'), JSON.stringify({
    cniVersion, name: 'podnet', plugins: [{ type: 'bridge', bridge: 'cni0', ipam: { type: 'host-local', subnet: '198.18.110.0/24' } }, { type: 'tuning' }],
  }));
  const config = loadConfig({ flags: { 'state-dir': join(dir, 'state'), 'cni-conf-dir': confDir, 'log-level': 'silent', ...flags } });
  const host = new FakeHost();
  const clock = { now: 0, monotonicMs: () => clock.now };
  const manager = new NetworkManager(config, logger, () => {}, { ...host.sideEffects(), clock });
  t.after(() => manager.close());
  return { host, manager, clock };
}

const params = { sandboxId: 'pod1', podName: 'web', podNamespace: 'default', podUid: 'uid-pod1', hostname: 'web', dns: { servers: [], searches: [], options: [] }, portMappings: [] };
/**
 * Masquerade leaves eth0 as CNI made it, so CHECK judges it with the VM side wired too (a tap
 * binding's eth0 is reported skipped); the VM side is awaited so it cannot change the network
 * between two checks (it wires once netd has been idle for 25 ms).
 */
const masqueraded = { ...params, annotations: { 'vmlet.io/network-binding': 'masquerade' } };

async function setUpWired(manager: NetworkManager): Promise<void> {
  await manager.setup(masqueraded);
  assert.equal((await manager.vmNetwork({ sandboxId: 'pod1' })).ready, true);
}

test('status with check: CHECK of every plugin with the cached result; a failing CHECK is in the status and logged', async (t) => {
  const warnings: unknown[] = [];
  const logger = { ...silentLogger, warn: (obj: unknown) => void warnings.push(obj), child: () => logger } as unknown as Logger;
  const { host, manager, clock } = start(t, '1.0.0', {}, logger);
  await manager.load();
  await setUpWired(manager);
  const plain = await manager.status({ sandboxId: 'pod1' });
  assert.equal(plain?.cniCheck, undefined, 'no CHECK without asking');
  const ok = await manager.status({ sandboxId: 'pod1', check: true });
  assert.equal(ok?.cniCheck?.ok, true);
  assert.deepEqual(ok?.cniCheck?.networks, [{ network: 'podnet', ifName: 'eth0', result: 'ok' }]);
  const checks = host.cni.calls.filter((c) => c.command === 'CHECK');
  assert.deepEqual(checks.map((c) => c.pluginType), ['bridge', 'tuning']);
  assert.equal((checks[0]!.config.prevResult as { ips: { address: string }[] }).ips[0]!.address, '198.18.110.2/24', 'CHECK gets the cached ADD result');

  host.cni.failOn = { command: 'CHECK', type: 'tuning' };
  assert.equal((await manager.status({ sandboxId: 'pod1', check: true }))?.cniCheck?.ok, true, 'a young report answers');
  assert.equal(host.cni.calls.filter((c) => c.command === 'CHECK').length, 2, 'no CHECK for it');
  clock.now += CNI_CHECK_MIN_AGE_MS;
  const failed = await manager.status({ sandboxId: 'pod1', check: true });
  assert.equal(failed?.cniCheck?.ok, false);
  assert.equal(failed?.cniCheck?.networks[0]?.result, 'failed');
  assert.match(failed!.cniCheck!.networks[0]!.error!, /tuning says no/);
  assert.equal(warnings.length, 1, 'one warning line');
  // The last report stays in the status until the next CHECK.
  assert.equal((await manager.status({ sandboxId: 'pod1' }))?.cniCheck?.ok, false);
  await manager.teardown({ sandboxId: 'pod1' });
  assert.equal(await manager.status({ sandboxId: 'pod1' }), null);
});

test('verbose status while polling: concurrent calls share one CHECK; teardown and a new setup forget the report', async (t) => {
  const { host, manager, clock } = start(t, '1.0.0');
  await manager.load();
  await setUpWired(manager);
  const checks = () => host.cni.calls.filter((c) => c.command === 'CHECK').length;
  const concurrent = await Promise.all([1, 2, 3].map(() => manager.status({ sandboxId: 'pod1', check: true })));
  assert.deepEqual(concurrent.map((s) => s?.cniCheck?.ok), [true, true, true]);
  assert.equal(checks(), 2, 'one CHECK (bridge + tuning) for three calls');
  for (let i = 0; i < 9; i++) {
    clock.now += 1_000;
    await manager.status({ sandboxId: 'pod1', check: true });
  }
  assert.equal(checks(), 2, 'a poll every second for 9 s: no further CHECK');
  clock.now += 1_000;
  await manager.status({ sandboxId: 'pod1', check: true });
  assert.equal(checks(), 4, 'at 10 s: CHECK again');

  await manager.teardown({ sandboxId: 'pod1' });
  await setUpWired(manager);
  assert.equal((await manager.status({ sandboxId: 'pod1' }))?.cniCheck, undefined, 'the torn-down network\'s report is gone');
  host.cni.failOn = { command: 'CHECK', type: 'tuning' };
  assert.equal((await manager.status({ sandboxId: 'pod1', check: true }))?.cniCheck?.ok, false, 'the new network is checked at once');
  assert.equal(checks(), 6);
  await manager.teardown({ sandboxId: 'pod1' });
});

test('--cni-check-interval runs CHECK on its own; a 0.3.1 network is reported skipped, not passed', async (t) => {
  const { host, manager } = start(t, '0.3.1', { 'cni-check-interval': '1' });
  await manager.load();
  await manager.setup(params);
  const started = Date.now();
  let report;
  while (!(report = (await manager.status({ sandboxId: 'pod1' }))?.cniCheck) && Date.now() - started < 5_000) await new Promise((r) => setTimeout(r, 100));
  assert.ok(report, 'a periodic CHECK ran');
  assert.equal(report.ok, true);
  assert.deepEqual(report.networks, [{ network: 'podnet', ifName: 'eth0', result: 'skipped', reason: 'cniVersion 0.3.1 has no CHECK' }]);
  assert.equal(host.cni.calls.filter((c) => c.command === 'CHECK').length, 0);
  await manager.teardown({ sandboxId: 'pod1' });
});
