/**
 * netd with a pod that asks for several networks (CNI-Genie's `cni` and Multus's
 * `k8s.v1.cni.cncf.io/networks` annotations), against the fake host: ADD order and ifnames, one
 * binding per interface, the default route only through the default network, the network-status,
 * DEL in reverse (after a restart too) and the rollback of a network that fails to ADD.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.js';
import type { Config } from '../../../src/config/table.js';
import { FailedPreconditionError, InvalidArgumentError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { CniPluginError } from '../../../src/network/cni/errors.js';
import { NetworkManager } from '../../../src/netd/manager.js';
import type { SetupParams } from '../../../src/netd/protocol.js';
import { assertGolden } from '../../helpers/golden.js';
import { FakeHost } from './fake_host.js';

interface Netd {
  manager: NetworkManager;
  host: FakeHost;
  config: Config;
}

async function startNetd(t: TestContext): Promise<Netd> {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-netd-networks-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const confDir = join(dir, 'cni');
  mkdirSync(confDir);
  writeFileSync(join(confDir, '10-podnet.conflist'), JSON.stringify({
    cniVersion: '1.0.0', name: 'podnet', plugins: [{ type: 'bridge', bridge: 'cni0', ipam: { type: 'host-local', subnet: '198.18.110.0/24' } }],
  }));
  writeFileSync(join(confDir, '20-sidenet.conflist'), JSON.stringify({
    cniVersion: '1.0.0', name: 'sidenet',
    plugins: [{ type: 'bridge', bridge: 'side0', ipam: { type: 'host-local', subnet: '198.18.111.0/24' } }, { type: 'tuning', capabilities: { mac: true } }],
  }));
  const config = loadConfig({ flags: { 'state-dir': join(dir, 'state'), 'cni-conf-dir': confDir, 'log-level': 'silent' } });
  const host = new FakeHost();
  const netd: Netd = { host, config, manager: undefined as unknown as NetworkManager };
  netd.manager = await restart(netd);
  t.after(() => netd.manager.close());
  return netd;
}

async function restart(netd: Netd): Promise<NetworkManager> {
  const manager = new NetworkManager(netd.config, silentLogger, () => {}, netd.host.sideEffects());
  await manager.load();
  return manager;
}

function params(sandboxId: string, annotations: Record<string, string>): SetupParams {
  return {
    sandboxId, podName: 'web', podNamespace: 'default', podUid: `uid-${sandboxId}`, hostname: 'web',
    dns: { servers: [], searches: [], options: [] }, portMappings: [], annotations,
  };
}

function assertNothingLeft(netd: Netd): void {
  assert.deepEqual(netd.host.describe(), [], 'netns left');
  assert.deepEqual([...netd.host.dhcpRunning], [], 'DHCP responder left');
  assert.deepEqual((existsSync(join(netd.config.stateDir, "netd")) ? readdirSync(join(netd.config.stateDir, "netd")) : []).filter((f) => f.endsWith('.json')), [], 'netd record left');
  const cache = existsSync(netd.config.cniCacheDir) ? readdirSync(netd.config.cniCacheDir, { withFileTypes: true }).filter((f) => f.isFile()) : [];
  assert.deepEqual(cache.map((f) => f.name), [], 'CNI cache record left');
}

test('Multus short form: eth0 from the default network, net1 from sidenet; one default route; network-status; DEL in reverse', async (t) => {
  const netd = await startNetd(t);
  const { manager, host } = netd;
  host.section('setup pod1 with k8s.v1.cni.cncf.io/networks: sidenet');
  const setup = await manager.setup(params('pod1', { 'k8s.v1.cni.cncf.io/networks': 'sidenet' }));
  assert.deepEqual(setup.podIps, ['198.18.110.2'], 'the pod IPs are the default network\'s only');
  host.section('vmNetwork pod1');
  const vm = await manager.vmNetwork({ sandboxId: 'pod1' });
  assert.ok(vm.ready, JSON.stringify(vm));
  const [eth0, net1] = vm.network.interfaces;
  assert.equal(vm.network.interfaces.length, 2);
  assert.deepEqual([eth0!.name, net1!.name], ['eth0', 'net1']);
  assert.deepEqual(eth0!.ips, [{ family: 4, address: '198.18.110.2', prefixLength: 24, gateway: '198.18.110.1' }]);
  assert.deepEqual(eth0!.routes, [{ destination: '0.0.0.0/0', gateway: '198.18.110.1' }]);
  // The second network: its address, no gateway and no default route.
  assert.deepEqual(net1!.ips, [{ family: 4, address: '198.18.111.3', prefixLength: 24 }]);
  assert.deepEqual(net1!.routes, []);
  assert.notEqual(eth0!.binding.kind === 'tap' && eth0!.binding.tap, net1!.binding.kind === 'tap' && net1!.binding.tap, 'one TAP each');
  const status = await manager.status({ sandboxId: 'pod1' });
  assert.deepEqual(status?.networkStatus, [
    { name: 'podnet', interface: 'eth0', ips: ['198.18.110.2'], mac: eth0!.mac, default: true, dns: { nameservers: ['198.18.110.1'], search: ['cluster.local'] } },
    { name: 'sidenet', interface: 'net1', ips: ['198.18.111.3'], mac: net1!.mac, default: false, dns: { nameservers: ['198.18.111.1'], search: ['cluster.local'] } },
  ]);
  host.section('teardown pod1');
  await manager.teardown({ sandboxId: 'pod1' });
  assertNothingLeft(netd);
  const log = host.text();
  assert.ok(log.indexOf('cni DEL tuning pod1 /run/netns/vmlet-pod1 net1') < log.indexOf('cni DEL bridge pod1 /run/netns/vmlet-pod1 eth0'), 'sidenet is deleted before podnet');
  assertGolden('netd/multus-two-networks.log', log);
});

test('CNI-Genie\'s cni annotation: networks by name as eth0, eth1; the first is the default, even when it is not the default conflist', async (t) => {
  const netd = await startNetd(t);
  const { manager } = netd;
  const setup = await manager.setup(params('pod1', { cni: 'sidenet, podnet' }));
  assert.deepEqual(setup.podIps, ['198.18.111.2']);
  const vm = await manager.vmNetwork({ sandboxId: 'pod1' });
  assert.ok(vm.ready);
  assert.deepEqual(vm.network.interfaces.map((i) => [i.name, i.ips[0]!.gateway ?? '-', i.routes.length]), [['eth0', '198.18.111.1', 1], ['eth1', '-', 0]]);
  assert.deepEqual(vm.network.dns.nameservers, ['198.18.111.1'], 'DNS from the default network');
  const status = await manager.status({ sandboxId: 'pod1' });
  assert.deepEqual(status?.networkStatus?.map((e) => [e.name, e.interface, e.default]), [['sidenet', 'eth0', true], ['podnet', 'eth1', false]]);
  await manager.teardown({ sandboxId: 'pod1' });
  assertNothingLeft(netd);
});

test('a restarted netd tears every network down in reverse from its record and the CNI cache', async (t) => {
  const netd = await startNetd(t);
  await netd.manager.setup(params('pod1', { 'k8s.v1.cni.cncf.io/networks': '[{"name":"sidenet","interface":"side9","mac":"02:00:00:00:11:22"}]' }));
  assert.ok((await netd.manager.vmNetwork({ sandboxId: 'pod1' })).ready);
  await netd.manager.close();
  netd.manager = await restart(netd);
  const mark = netd.host.section('teardown by a new netd');
  await netd.manager.teardown({ sandboxId: 'pod1' });
  assertNothingLeft(netd);
  const dels = netd.host.text(mark).split('\n').filter((l) => l.startsWith('cni DEL'));
  assert.deepEqual(dels, [
    'cni DEL tuning pod1 /run/netns/vmlet-pod1 side9',
    'cni DEL bridge pod1 /run/netns/vmlet-pod1 side9',
    'cni DEL bridge pod1 /run/netns/vmlet-pod1 eth0',
  ]);
});

test('a network that fails to ADD rolls back the ones already added: DEL, netns, record, nothing left', async (t) => {
  const netd = await startNetd(t);
  const { manager, host } = netd;
  host.cni.failOn = { command: 'ADD', type: 'tuning' };
  const mark = host.section('setup pod1, sidenet fails');
  await assert.rejects(manager.setup(params('pod1', { 'k8s.v1.cni.cncf.io/networks': 'sidenet' })), (err) => err instanceof CniPluginError && err.plugin === 'tuning');
  assertNothingLeft(netd);
  assertGolden('netd/second-network-fails.log', host.text(mark));
  assert.equal(await manager.status({ sandboxId: 'pod1' }), null);
});

test('bad annotations and unknown networks are refused before anything is made', async (t) => {
  const netd = await startNetd(t);
  const { manager, host } = netd;
  const cases: [Record<string, string>, typeof InvalidArgumentError | typeof FailedPreconditionError, RegExp][] = [
    [{ 'k8s.v1.cni.cncf.io/networks': '[{"name": "sidenet", "bandwidth": {}}]' }, InvalidArgumentError, /k8s\.v1\.cni\.cncf\.io\/networks\[0\]: "bandwidth" not supported/],
    [{ 'k8s.v1.cni.cncf.io/networks': '[{"name": ' }, InvalidArgumentError, /annotation k8s\.v1\.cni\.cncf\.io\/networks.*not valid JSON/],
    [{ 'k8s.v1.cni.cncf.io/networks': 'other/sidenet' }, InvalidArgumentError, /not the pod's \(default\)/],
    [{ cni: 'sidenet', 'k8s.v1.cni.cncf.io/networks': 'sidenet' }, InvalidArgumentError, /both name networks/],
    [{ cni: 'sidenet,,podnet' }, InvalidArgumentError, /annotation cni: .* empty network name/],
    [{ cni: 'nosuchnet' }, FailedPreconditionError, /network nosuchnet .* no conflist of that name/],
    // podnet has no plugin that takes a MAC: refused, not ignored.
    [{ 'k8s.v1.cni.cncf.io/networks': '[{"name":"podnet","interface":"net5","mac":"02:00:00:00:11:22"}]' }, FailedPreconditionError, /network podnet asked for with a "mac"/],
  ];
  for (const [annotations, kind, message] of cases) {
    await assert.rejects(manager.setup(params('pod1', annotations)), (err) => err instanceof kind && message.test((err as Error).message), JSON.stringify(annotations));
  }
  assert.deepEqual(host.log.filter((l) => !l.startsWith('#')), [], 'nothing was called');
  assertNothingLeft(netd);
});
