/**
 * netd's warm netns (src/container/warm/pool.ts makes VMs in them before any sandbox): created on
 * request, adopted by a sandbox's setup (CNI ADD in it), deleted with that sandbox, refused when
 * not a warm netns, and collected by a restarted netd when no sandbox adopted it. Real
 * namespaces and Debian's bridge plugin; pod network in 198.18.0.0/15, no masquerade.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import type { NetworkManager } from '../../../src/netd/manager.js';
import { FailedPreconditionError, InvalidArgumentError } from '../../../src/errors.js';
import { prewiredNames } from '../../../src/network/names.js';
import { bridgeNetwork, sandboxParams as params } from './bridge_network.js';

const network = bridgeNetwork('warm', '198.18.79.0/24');
let manager: NetworkManager;
/** Every warm netns this file made, so after() can remove one a failed test left. */
const made = new Set<string>();

before(async () => {
  manager = await network.startManager();
});

after(async () => {
  await manager?.close();
  for (const name of readdirSync('/run/netns').filter((n) => made.has(n))) execFileSync('ip', ['netns', 'delete', name]);
  network.remove();
});

function links(netnsName: string): { ifname: string; flags: string[]; master?: string }[] {
  return JSON.parse(execFileSync('ip', ['-n', netnsName, '-j', 'link'], { encoding: 'utf8' }));
}

test('a sandbox adopts a warm netns: CNI ADD runs in it, the VM side is built there, teardown deletes it', async () => {
  const warm = await manager.createWarmNetns();
  made.add(warm.netnsName);
  assert.match(warm.netnsName, /^vmlet-warm-[0-9a-f]{16}$/);
  assert.equal(warm.netnsPath, `/run/netns/${warm.netnsName}`);
  assert.ok(existsSync(warm.netnsPath));
  // Interface 0's bridge and TAP are there already (down), with the DHCP isolation rules.
  const names = prewiredNames(warm.netnsName);
  const before = links(warm.netnsName);
  assert.deepEqual(before.map((l) => l.ifname).sort(), [names.bridge, 'lo', names.tap].sort());
  assert.ok(before.every((l) => l.ifname === 'lo' || !l.flags.includes('UP')), 'prewired devices stay down');
  assert.match(execFileSync('nsenter', [`--net=${warm.netnsPath}`, '--', 'nft', 'list', 'tables'], { encoding: 'utf8' }), /bridge/);
  const p = params(warm.netnsName);
  const result = await manager.setup(p);
  assert.equal(result.netnsPath, warm.netnsPath);
  assert.equal(result.podIps.length, 1);
  const plan = await manager.vmNetworkPlan({ sandboxId: p.sandboxId });
  assert.ok(plan.ready && plan.tapsReady, `the TAPs of a warm netns exist at the plan: ${JSON.stringify(plan)}`);
  assert.equal(plan.ready && plan.network.interfaces[0]!.binding.kind === 'tap' && plan.network.interfaces[0]!.binding.tap, names.tap);
  const ready = await manager.vmNetwork({ sandboxId: p.sandboxId });
  assert.equal(ready.ready, true, JSON.stringify(ready));
  // Wired with the prewired devices: both up, eth0 and the TAP ports of the bridge.
  const wiredLinks = links(warm.netnsName);
  assert.equal(wiredLinks.find((l) => l.ifname === names.tap)?.master, names.bridge);
  assert.equal(wiredLinks.find((l) => l.ifname === 'eth0')?.master, names.bridge);
  assert.ok(wiredLinks.find((l) => l.ifname === names.bridge)?.flags.includes('UP'));
  // The pod's interface is in the adopted namespace.
  assert.match(execFileSync('ip', ['-n', warm.netnsName, '-br', 'link'], { encoding: 'utf8' }), /eth0/);
  await assert.rejects(manager.deleteWarmNetns({ netnsName: warm.netnsName }), FailedPreconditionError);
  await manager.teardown({ sandboxId: p.sandboxId });
  assert.equal(existsSync(warm.netnsPath), false);
  assert.deepEqual(network.leases(), []);
});

test('a kept warm netns: after teardown nothing of the sandbox is in it (lease freed); rewarmNetns prewires it as new', async () => {
  const warm = await manager.createWarmNetns();
  made.add(warm.netnsName);
  const names = prewiredNames(warm.netnsName);
  const fresh = links(warm.netnsName).map((l) => `${l.ifname} ${l.flags.includes('UP')}`).sort();
  const p = params(warm.netnsName);
  await manager.setup(p);
  assert.equal((await manager.vmNetwork({ sandboxId: p.sandboxId })).ready, true);
  assert.deepEqual(await manager.teardown({ sandboxId: p.sandboxId, keepWarmNetns: true }), { keptNetns: warm.netnsName });
  // The Stop's reply comes here: the pod's address is back, its veth gone, the netns no sandbox's.
  assert.deepEqual(network.leases(), []);
  assert.ok(!links(warm.netnsName).some((l) => l.ifname === 'eth0'));
  assert.equal(await manager.status({ sandboxId: p.sandboxId }), null);
  assert.deepEqual(await manager.rewarmNetns({ netnsName: warm.netnsName }), { rewarmed: true });
  assert.deepEqual(links(warm.netnsName).map((l) => `${l.ifname} ${l.flags.includes('UP')}`).sort(), fresh);
  assert.deepEqual(links(warm.netnsName).map((l) => l.ifname).sort(), [names.bridge, 'lo', names.tap].sort());
  // Adopted again by the next pod, and deleted with it.
  const q = params(warm.netnsName);
  await manager.setup(q);
  assert.equal((await manager.vmNetwork({ sandboxId: q.sandboxId })).ready, true);
  await manager.teardown({ sandboxId: q.sandboxId });
  assert.equal(existsSync(warm.netnsPath), false);
  assert.deepEqual(network.leases(), []);
});

test('setup refuses a netns that is not a warm one, or one that does not exist, and leaves nothing', async () => {
  const bad = params('vmlet-somebody-else');
  await assert.rejects(manager.setup(bad), InvalidArgumentError);
  await assert.rejects(manager.setup(params('../../etc')), InvalidArgumentError);
  const missing = params('vmlet-warm-00000000deadbeef');
  await assert.rejects(manager.setup(missing), /does not exist/);
  await manager.teardown({ sandboxId: missing.sandboxId });
  assert.deepEqual(network.leases(), []);
  assert.deepEqual(network.records(), []);
  await assert.rejects(manager.deleteWarmNetns({ netnsName: 'vmlet-notwarm' }), InvalidArgumentError);
});

test('a restarted netd deletes the warm netns no sandbox adopted and keeps adopted ones', async () => {
  const idle = await manager.createWarmNetns();
  made.add(idle.netnsName);
  const adopted = await manager.createWarmNetns();
  made.add(adopted.netnsName);
  const p = params(adopted.netnsName);
  await manager.setup(p);
  await manager.close();
  manager = await network.startManager();
  assert.equal(existsSync(idle.netnsPath), false, 'the unadopted warm netns is gone');
  assert.ok(existsSync(adopted.netnsPath), 'the adopted one stays with its sandbox');
  await manager.teardown({ sandboxId: p.sandboxId });
  assert.equal(existsSync(adopted.netnsPath), false);
  assert.deepEqual(network.leases(), []);
});
