/**
 * The warm pool sized from demand, on a real daemon with real libvirt and QEMU (no guest boots):
 * `--vm-warm-pool 1 --vm-warm-pool-max 3 --vm-warm-fill-parallel 2`. Two pods arriving together
 * (one claims the warm VM, one finds none) raise the target to the ceiling; the pool refills to it
 * with real paused QEMUs; a returned VM above the target is trimmed; stopping the daemon leaves no
 * QEMU and no warm netns. The decay back to the floor (after 60 s without claims) is the unit test's
 * (test/unit/container/warm/pool.test.ts), with a short window.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { startTestDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { clearStaleTestSubnet, deleteLink, qemuPids, removeAllAndStop, waitFor } from '../../helpers/e2e.js';
import { ownerIdFor } from '../../../src/store/owner.js';
import { isOwnWarmNetns } from '../../../src/network/names.js';

const tag = randomBytes(3).toString('hex');
const bridge = `vwd${tag}`;
const subnet = '198.19.64';
const port = 20000 + Math.floor(Math.random() * 20000);
let d: TestDaemon;

function gauges(): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/metrics', timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => {
        const out: Record<string, number> = {};
        for (const m of body.matchAll(/^vmlet_warm_pool_(\w+) (\d+)$/gm)) out[m[1]!] = Number(m[2]);
        resolve(out);
      });
    }).on('error', reject);
  });
}

function ownWarmNetns(): string[] {
  const owner = ownerIdFor(d.stateDir);
  // stderr ignored: `ip netns list` complains about other people's netns going away meanwhile.
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n').map((l) => l.split(' ')[0]!).filter((n) => isOwnWarmNetns(n, owner));
}

before(async () => {
  clearStaleTestSubnet(subnet);
  await ensureLibvirtd();
  d = await startTestDaemon({ args: ['--kvm', 'off', '--vm-memory', '256Mi', '--vm-warm-pool', '1', '--vm-warm-pool-max', '3', '--vm-warm-fill-parallel', '2', '--metrics-address', `127.0.0.1:${port}`] });
  writeFileSync(join(d.cniConfDir, '10-warm-demand.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-warm-demand-${tag}`,
    plugins: [{ type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: join(d.dir, 'ipam'), ranges: [[{ subnet: `${subnet}.0/24`, gateway: `${subnet}.1` }]] } }],
  }));
});

after(async () => {
  await removeAllAndStop(d);
  deleteLink(bridge);
});

test('demand raises the warm pool from its floor to its ceiling with real QEMUs; a surplus return is trimmed; nothing is left after stop', { timeout: 600_000 }, async () => {
  const started = performance.now();
  await waitFor('the floor: one idle warm VM', 300_000, async () => ((await gauges()).idle === 1 || undefined));
  assert.deepEqual(await gauges(), { size: 1, max: 3, target: 1, idle: 1, claims_total: 0 });

  const run = async (name: string) => (await d.runtime.RunPodSandbox!({ config: { metadata: { name, namespace: 'default', uid: randomUUID(), attempt: 0 }, hostname: name, log_directory: join(d.dir, name), linux: {} } })).pod_sandbox_id as string;
  const [first, second] = await Promise.all([run('demand-a'), run('demand-b')]);
  const afterClaims = await gauges();
  // Normally one pod gets the warm VM and the other none (the refill waits 1 s after a claim); on a slow machine both may get one.
  const claimed = afterClaims.claims_total!;
  assert.ok(claimed >= 1 && claimed <= 2, `claims ${claimed}`);
  assert.equal(afterClaims.target, 3, 'floor 1 + 2 claims (served or not) = the ceiling');

  await waitFor('the refill to the ceiling', 300_000, async () => ((await gauges()).idle === 3 || undefined));
  assert.equal(qemuPids(d.stateDir).length, 3 + claimed, 'three idle warm QEMUs and the claimed ones');
  assert.equal(ownWarmNetns().length, 3 + claimed, 'one warm netns per idle VM, and the claimed ones (the sandboxes’ now, under their warm names)');
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal((await gauges()).idle, 3, 'never above the ceiling');

  // A pod that claimed a VM stops without using it: the VM goes back to the pool, above the target, and the surplus is trimmed.
  for (const id of [first, second]) {
    await d.runtime.StopPodSandbox!({ pod_sandbox_id: id });
    await d.runtime.RemovePodSandbox!({ pod_sandbox_id: id });
  }
  await waitFor('the surplus trimmed', 120_000, () => (qemuPids(d.stateDir).length === 3 && ownWarmNetns().length === 3 || undefined));
  assert.equal((await gauges()).idle, 3);

  assert.equal(await d.stop(), 0);
  assert.deepEqual(qemuPids(d.stateDir), []);
  assert.deepEqual(ownWarmNetns(), []);
  process.stderr.write(`warm pool demand: ${Math.round(performance.now() - started)} ms\n`);
});
