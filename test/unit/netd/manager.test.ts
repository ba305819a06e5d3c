/**
 * netd's NetworkManager through whole flows against a fake host (fake_host.ts): every netns, CNI,
 * ip, nft and DHCP call it makes is logged and the logs are compared with test/golden/netd/.
 * Records and the CNI cache are real files in a temp dir.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.js';
import type { Config } from '../../../src/config/table.js';
import { FailedPreconditionError, InvalidArgumentError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { CniPluginError } from '../../../src/network/cni/errors.js';
import { NetworkManager } from '../../../src/netd/manager.js';
import type { NetdEvent, SetupParams } from '../../../src/netd/protocol.js';
import { assertGolden } from '../../helpers/golden.js';
import { FakeHost } from './fake_host.js';

interface Netd {
  manager: NetworkManager;
  host: FakeHost;
  events: NetdEvent[];
  config: Config;
  dir: string;
}

async function startNetd(t: TestContext): Promise<Netd> {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-netd-unit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const confDir = join(dir, 'cni');
  mkdirSync(confDir);
  writeFileSync(join(confDir, '10-podnet.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: 'podnet',
    plugins: [{ type: 'bridge', bridge: 'cni0', ipam: { type: 'host-local', subnet: '198.18.110.0/24' } }, { type: 'portmap', capabilities: { portMappings: true } }],
  }));
  const config = loadConfig({ flags: { 'state-dir': join(dir, 'state'), 'cni-conf-dir': confDir, 'log-level': 'silent' } });
  const host = new FakeHost();
  const netd = { host, events: [] as NetdEvent[], config, dir } as Netd;
  netd.manager = await restartNetd(netd);
  t.after(() => netd.manager.close());
  return netd;
}

/** A new netd on the same state and host, as serve starts one after the old one died. */
async function restartNetd(netd: Netd): Promise<NetworkManager> {
  const manager = new NetworkManager(netd.config, silentLogger, (e) => netd.events.push(e), netd.host.sideEffects());
  await manager.load();
  return manager;
}

function params(sandboxId: string, netnsName?: string): SetupParams {
  return {
    sandboxId, podName: 'web', podNamespace: 'default', podUid: `uid-${sandboxId}`, hostname: 'web',
    dns: { servers: [], searches: [], options: [] },
    portMappings: [{ protocol: 'tcp', containerPort: 80, hostPort: 8080, hostIP: '' }],
    ...(netnsName ? { netnsName } : {}),
  };
}

function assertNothingLeft(netd: Netd): void {
  assert.deepEqual(netd.host.describe(), [], 'netns left');
  assert.deepEqual([...netd.host.dhcpRunning], [], 'DHCP responder left');
  assert.deepEqual(readdirSync(join(netd.config.stateDir, 'netd')).filter((f) => f.endsWith('.json')), [], 'netd record left');
  const cache = readdirSync(netd.config.cniCacheDir, { withFileTypes: true }).filter((f) => f.isFile());
  assert.deepEqual(cache.map((f) => f.name), [], 'CNI cache record left');
}

/** The last part of a flow: pod1 torn down, nothing left, the whole log as `golden` says. */
async function tearDownPod1(netd: Netd, golden: string, title = 'teardown pod1'): Promise<void> {
  netd.host.section(title);
  await netd.manager.teardown({ sandboxId: 'pod1' });
  assertNothingLeft(netd);
  assertGolden(golden, netd.host.text());
}

test('a plain sandbox: setup, the VM side asked for, teardown', async (t) => {
  const netd = await startNetd(t);
  const { manager, host } = netd;
  host.section('setup pod1');
  const setup = await manager.setup(params('pod1'));
  assert.deepEqual(setup, { netnsPath: '/run/netns/vmlet-pod1', podIps: ['198.18.110.2'] });
  assert.equal((await manager.status({ sandboxId: 'pod1' }))?.vmSide, 'pending');
  // A repeated setup answers from the record and calls nothing.
  const mark = host.log.length;
  assert.deepEqual(await manager.setup(params('pod1')), setup);
  assert.equal(host.log.length, mark);
  host.section('vmNetwork pod1');
  const vm = await manager.vmNetwork({ sandboxId: 'pod1' });
  assert.ok(vm.ready, JSON.stringify(vm));
  assert.deepEqual(await manager.vmNetworkPlan({ sandboxId: 'pod1' }), { ...vm, tapsReady: true });
  assert.equal(vm.network.hostname, 'web');
  assert.deepEqual(vm.network.dns, { nameservers: ['198.18.110.1'], search: ['cluster.local'], options: [] });
  const iface = vm.network.interfaces[0]!;
  assert.equal(iface.mac, '0a:58:c6:12:6e:02', 'the VM takes over the MAC CNI gave eth0');
  const status = await manager.status({ sandboxId: 'pod1' });
  assert.equal(status?.vmSide, 'ready');
  assert.deepEqual((status?.dhcp as { leases: unknown[] }).leases, [{ mac: '0a:58:c6:12:6e:02', ip: '198.18.110.2' }]);
  await tearDownPod1(netd, 'netd/plain-sandbox.log');
  assert.equal(await manager.status({ sandboxId: 'pod1' }), null);
  await assert.rejects(manager.vmNetwork({ sandboxId: 'pod1' }), FailedPreconditionError);
  assert.deepEqual(netd.events, []);
});

test('teardown starts the first DEL plugin while it releases the VM side; the DEL takes it', async (t) => {
  const netd = await startNetd(t);
  const { manager, host } = netd;
  await manager.setup(params('pod1'));
  assert.ok((await manager.vmNetwork({ sandboxId: 'pod1' })).ready);
  const callsBefore = host.cni.calls.length;
  await manager.teardown({ sandboxId: 'pod1' });
  const dels = host.cni.calls.slice(callsBefore);
  assert.deepEqual(dels.map((c) => `${c.command} ${c.pluginType}`), ['DEL portmap', 'DEL bridge']);
  const { config: _config, ...firstDel } = dels[0]!;
  assert.deepEqual(host.cni.prestarts, [{ launch: firstDel, callsBefore, taken: true, discarded: false }], 'the last plugin of the list, prestarted before any DEL ran, taken by its DEL');
  assert.equal(firstDel.netns, '/run/netns/vmlet-pod1');
  assertNothingLeft(netd);
});

test('a teardown whose DEL fails discards what it prestarted and no DEL took', async (t) => {
  const netd = await startNetd(t);
  const { manager, host } = netd;
  await manager.setup(params('pod1'));
  // The prestarted launch was for another netns than the DEL's (gone meanwhile): not taken.
  host.cni.prestarts = [];
  const realPrestart = host.cni.prestart.bind(host.cni);
  host.cni.prestart = (launch) => realPrestart({ ...launch, netns: '/run/netns/elsewhere' });
  host.cni.failOn = { command: 'DEL', type: 'portmap' };
  await assert.rejects(manager.teardown({ sandboxId: 'pod1' }), /teardown incomplete/);
  assert.equal(host.cni.prestarts.length, 1);
  assert.deepEqual({ taken: host.cni.prestarts[0]!.taken, discarded: host.cni.prestarts[0]!.discarded }, { taken: false, discarded: true });
  host.cni.failOn = undefined;
  await manager.teardown({ sandboxId: 'pod1' });
  assertNothingLeft(netd);
});

test('a sandbox adopts a prewired warm netns: CNI ADD in it, the prewired bridge and TAP joined up, all deleted with it', async (t) => {
  const netd = await startNetd(t);
  const { manager, host } = netd;
  host.section('createWarmNetns');
  const warm = await manager.createWarmNetns();
  assert.deepEqual(warm, { netnsName: 'vmlet-warm-0000000000000001', netnsPath: '/run/netns/vmlet-warm-0000000000000001' });
  host.section('setup pod1 in the warm netns');
  assert.deepEqual(await manager.setup(params('pod1', warm.netnsName)), { netnsPath: warm.netnsPath, podIps: ['198.18.110.2'] });
  host.section('vmNetworkPlan and vmNetwork pod1');
  const plan = await manager.vmNetworkPlan({ sandboxId: 'pod1' });
  assert.ok(plan.ready && plan.tapsReady, `the TAP of a warm netns exists at the plan: ${JSON.stringify(plan)}`);
  const vm = await manager.vmNetwork({ sandboxId: 'pod1' });
  assert.ok(vm.ready);
  assert.deepEqual(vm.network, plan.network);
  await assert.rejects(manager.deleteWarmNetns({ netnsName: warm.netnsName }), FailedPreconditionError);
  await tearDownPod1(netd, 'netd/warm-adoption.log');
});

test('teardown keeping a warm netns: unwired, CNI DEL run, kept; rewarmNetns prewires it again instead of it being deleted', async (t) => {
  const netd = await startNetd(t);
  const { manager, host } = netd;
  host.section('createWarmNetns');
  const warm = await manager.createWarmNetns();
  const fresh = host.describe();
  host.section('setup pod1 in the warm netns, VM side prepared');
  await manager.setup(params('pod1', warm.netnsName));
  assert.ok((await manager.vmNetwork({ sandboxId: 'pod1' })).ready);
  host.section('teardown pod1 keeping the warm netns');
  assert.deepEqual(await manager.teardown({ sandboxId: 'pod1', keepWarmNetns: true }), { keptNetns: warm.netnsName });
  assert.equal(await manager.status({ sandboxId: 'pod1' }), null);
  host.section('rewarmNetns');
  assert.deepEqual(await manager.rewarmNetns({ netnsName: warm.netnsName }), { rewarmed: true });
  assert.deepEqual(host.describe(), fresh, 'the netns is as createWarmNetns left it');
  host.section('setup pod2 in the same warm netns');
  assert.deepEqual(await manager.setup(params('pod2', warm.netnsName)), { netnsPath: warm.netnsPath, podIps: ['198.18.110.3'] });
  await assert.rejects(manager.rewarmNetns({ netnsName: warm.netnsName }), FailedPreconditionError, 'a netns a sandbox holds is never rewarmed');
  await assert.rejects(manager.rewarmNetns({ netnsName: 'vmlet-other' }), InvalidArgumentError);
  host.section('teardown pod2 (not kept: deleted)');
  assert.deepEqual(await manager.teardown({ sandboxId: 'pod2' }), {});
  assertNothingLeft(netd);
  assertGolden('netd/warm-rewarm.log', host.text());
});

test('rewarm right after setup: prewired links never joined up are made anew, the netns as fresh', async (t) => {
  const netd = await startNetd(t);
  const { manager, host } = netd;
  const warm = await manager.createWarmNetns();
  const fresh = host.describe();
  await manager.setup(params('pod1', warm.netnsName));
  assert.deepEqual(await manager.teardown({ sandboxId: 'pod1', keepWarmNetns: true }), { keptNetns: warm.netnsName });
  assert.deepEqual(await manager.rewarmNetns({ netnsName: warm.netnsName }), { rewarmed: true });
  assert.deepEqual(host.describe(), fresh);
  await manager.deleteWarmNetns({ netnsName: warm.netnsName });
  assertNothingLeft(netd);
});

test('rewarm: a netns with a link left after CNI DEL is deleted; a netns that was not adopted is never kept', async (t) => {
  const netd = await startNetd(t);
  const { manager, host } = netd;
  const warm = await manager.createWarmNetns();
  await manager.setup(params('pod1', warm.netnsName));
  // A plugin whose DEL leaves a link behind (the fake bridge plugin removes only eth0).
  host.addLink(warm.netnsName, 'leftover0');
  assert.deepEqual(await manager.teardown({ sandboxId: 'pod1', keepWarmNetns: true }), { keptNetns: warm.netnsName });
  assert.deepEqual(await manager.rewarmNetns({ netnsName: warm.netnsName }), { rewarmed: false });
  assertNothingLeft(netd);
  await manager.setup(params('pod2'));
  assert.deepEqual(await manager.teardown({ sandboxId: 'pod2', keepWarmNetns: true }), {}, 'a netns of its own is never kept');
  assertNothingLeft(netd);
});

test('CNI ADD failing in the middle of the chain: DEL of the whole list, the netns and the record rolled back', async (t) => {
  const netd = await startNetd(t);
  const { manager, host } = netd;
  host.cni.failOn = { command: 'ADD', type: 'portmap' };
  host.section('setup pod1, portmap fails');
  await assert.rejects(manager.setup(params('pod1')), (err) => err instanceof CniPluginError && err.plugin === 'portmap');
  assert.equal(await manager.status({ sandboxId: 'pod1' }), null);
  assertNothingLeft(netd);
  // Nothing was deferred for it: past the idle delay no VM side comes.
  await new Promise((r) => setTimeout(r, 60));
  await tearDownPod1(netd, 'netd/cni-add-fails.log', 'teardown pod1 (kubelet cleans up after a failed Run)');
});

test('a wiring failure: the binding undoes itself, serve hears of it, vmNetwork says why, teardown still cleans up', async (t) => {
  const netd = await startNetd(t);
  const { manager, host } = netd;
  // The TAP cannot join the bridge: bridge and TAP exist by then, the TAP still outside the link group.
  host.failIpCommand = (_netns, command) =>
    command.includes('master') ? new FailedPreconditionError('RTNETLINK answers: Operation not permitted') : undefined;
  host.section('setup pod1');
  await manager.setup(params('pod1'));
  host.section('vmNetwork pod1, wiring fails');
  const vm = await manager.vmNetwork({ sandboxId: 'pod1' });
  assert.deepEqual(vm, { ready: false, message: 'RTNETLINK answers: Operation not permitted' });
  assert.deepEqual(netd.events, [{ event: 'vmSideFailed', sandboxId: 'pod1', message: vm.message }]);
  assert.deepEqual(await manager.vmNetworkPlan({ sandboxId: 'pod1' }), vm);
  const status = await manager.status({ sandboxId: 'pod1' });
  assert.equal(status?.vmSide, 'failed');
  assert.equal(status?.error, vm.message);
  assert.deepEqual(host.describe(), ['vmlet-pod1: eth0'], 'the bridge and TAP are gone again, eth0 is as CNI left it');
  await tearDownPod1(netd, 'netd/wiring-fails.log');
});

test('a restarted netd: DHCP back for a prepared sandbox, an interrupted VM side undone and prepared again, unadopted warm netns collected', async (t) => {
  const netd = await startNetd(t);
  const { host } = netd;
  const old = netd.manager;
  host.section('old netd: pod1 prepared, a warm netns nobody adopts, pod2 stops in the middle of its wiring');
  await old.setup(params('pod1'));
  assert.ok((await old.vmNetwork({ sandboxId: 'pod1' })).ready);
  await old.createWarmNetns();
  await old.setup(params('pod2'));
  let stuck!: () => void;
  const wiring = new Promise<void>((resolve) => (stuck = resolve));
  host.beforeIpApply = (netns, commands) => (netns === 'vmlet-pod2' && commands.some((c) => c.includes('master')) ? wiring : undefined);
  void old.vmNetwork({ sandboxId: 'pod2' });
  while (!host.log.some((l) => l.startsWith('ip apply vmlet-pod2'))) await new Promise((r) => setImmediate(r));
  // The old netd dies here: its DHCP responders with it, its records stay on disk.
  host.beforeIpApply = () => undefined;
  host.dhcpRunning.clear();
  host.section('new netd loads');
  netd.manager = await restartNetd(netd);
  const { manager } = netd;
  assert.equal((await manager.status({ sandboxId: 'pod2' }))?.vmSide, 'pending');
  host.section('vmNetwork pod1 and pod2');
  assert.ok((await manager.vmNetwork({ sandboxId: 'pod1' })).ready);
  const pod2 = await manager.vmNetwork({ sandboxId: 'pod2' });
  assert.ok(pod2.ready, JSON.stringify(pod2));
  assert.deepEqual([...host.dhcpRunning].sort(), ['/run/netns/vmlet-pod1', '/run/netns/vmlet-pod2']);
  host.section('teardown pod1 and pod2');
  await manager.teardown({ sandboxId: 'pod1' });
  await manager.teardown({ sandboxId: 'pod2' });
  assertNothingLeft(netd);
  assert.deepEqual(netd.events, []);
  assertGolden('netd/restart.log', host.text());
  stuck();
});

test('teardown is idempotent: again after a full one, and for a sandbox netd never saw', async (t) => {
  const netd = await startNetd(t);
  const { manager, host } = netd;
  await manager.setup(params('pod1'));
  assert.ok((await manager.vmNetwork({ sandboxId: 'pod1' })).ready);
  await manager.teardown({ sandboxId: 'pod1' });
  const from = host.section('teardown pod1 again');
  await manager.teardown({ sandboxId: 'pod1' });
  host.section('teardown of a sandbox netd never saw');
  await manager.teardown({ sandboxId: 'ghost' });
  assertNothingLeft(netd);
  assertGolden('netd/teardown-again.log', host.text(from));
});
