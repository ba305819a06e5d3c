/**
 * netd with a pod that asks for the masquerade binding, against the fake host: the VM's lease is
 * the internal address, the veth is never touched, the NAT table (named with the owner id) goes in
 * after the bridge and out before CNI DEL, the sysctls are put back; a warm netns's prewired
 * bridge and TAP are taken over and its isolation table removed. Bad annotation values are refused
 * before anything is made. Per interface: a Multus JSON element asks for the masquerade binding of
 * its network's interface, which takes the CIDR's next block and no default route.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.js';
import { InvalidArgumentError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { NetworkManager } from '../../../src/netd/manager.js';
import type { SetupParams } from '../../../src/netd/protocol.js';
import { assertGolden } from '../../helpers/golden.js';
import { FakeHost } from './fake_host.js';

async function start(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-netd-masq-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const confDir = join(dir, 'cni');
  mkdirSync(confDir);
  writeFileSync(join(confDir, '10-podnet.conflist'), JSON.stringify({
    cniVersion: '1.0.0', name: 'podnet', plugins: [{ type: 'bridge', bridge: 'cni0', ipam: { type: 'host-local', subnet: '198.18.110.0/24' } }],
  }));
  writeFileSync(join(confDir, '20-sidenet.conflist'), JSON.stringify({
    cniVersion: '1.0.0', name: 'sidenet', plugins: [{ type: 'bridge', bridge: 'side0', ipam: { type: 'host-local', subnet: '198.18.111.0/24' } }],
  }));
  const config = loadConfig({ flags: { 'state-dir': join(dir, 'state'), 'cni-conf-dir': confDir, 'log-level': 'silent' } });
  const host = new FakeHost();
  const manager = new NetworkManager(config, silentLogger, () => {}, host.sideEffects());
  t.after(() => manager.close());
  await manager.load();
  return { host, manager, config };
}

function params(sandboxId: string, binding: string | undefined, extra: Partial<SetupParams> = {}): SetupParams {
  return {
    sandboxId, podName: 'web', podNamespace: 'default', podUid: `uid-${sandboxId}`, hostname: 'web',
    dns: { servers: [], searches: [], options: [] },
    portMappings: [{ protocol: 'tcp', containerPort: 80, hostPort: 0, hostIP: '' }],
    ...(binding !== undefined ? { annotations: { 'vmlet.io/network-binding': binding } } : {}),
    ...extra,
  };
}

test('masquerade: internal address by DHCP, NAT table with the owner id, veth untouched, all undone on teardown (golden)', async (t) => {
  const { host, manager, config } = await start(t);
  host.section('setup pod1');
  const setup = await manager.setup(params('pod1', 'masquerade'));
  assert.deepEqual(setup.podIps, ['198.18.110.2'], 'the pod IP stays the CNI address');
  host.section('vmNetwork pod1');
  const vm = await manager.vmNetwork({ sandboxId: 'pod1' });
  assert.ok(vm.ready, JSON.stringify(vm));
  const [eth0] = vm.network.interfaces;
  assert.deepEqual(eth0!.ips, [{ family: 4, address: '10.0.2.2', prefixLength: 24, gateway: '10.0.2.1' }]);
  assert.deepEqual(eth0!.routes, [{ destination: '0.0.0.0/0', gateway: '10.0.2.1' }]);
  assert.equal(eth0!.mac, '0a:58:c6:12:6e:02');
  const status = await manager.status({ sandboxId: 'pod1' });
  assert.equal(status?.interfaces[0]?.kind, 'masquerade');
  assert.deepEqual((status?.interfaces[0] as { ports: unknown }).ports, [{ protocol: 'tcp', port: 80 }]);
  const links = host.describe();
  assert.match(links[0]!, /eth0 /, 'eth0 is no bridge port');
  assert.doesNotMatch(links[0]!, /eth0@/);
  const wiredLog = host.text();
  assert.doesNotMatch(wiredLog.replace(/^ip show .*$/gm, ''), /dev eth0/, 'no ip command changes the veth');
  assert.match(wiredLog, /nft vmlet-pod1: install ip vmlet-00000000-masq-vbr/);
  assert.match(wiredLog, /dhcp start \/run\/netns\/vmlet-pod1: 0a:58:c6:12:6e:02 10\.0\.2\.2\/24 via 10\.0\.2\.1/);
  assert.equal(host.sysctls.get('vmlet-pod1')?.['net.ipv4.conf.all.forwarding'], '1');
  host.section('teardown pod1');
  await manager.teardown({ sandboxId: 'pod1' });
  const log = host.text();
  assert.ok(log.includes('sysctl vmlet-pod1: write net.ipv4.conf.all.forwarding=0 net.ipv4.conf.all.send_redirects=1'), 'the sysctls are put back');
  assert.ok(log.indexOf('nft vmlet-pod1: remove ip vmlet-00000000-masq-') < log.indexOf('cni DEL bridge'), 'the NAT table goes before CNI DEL');
  assert.deepEqual(host.describe(), [], 'netns left');
  assert.deepEqual([...host.dhcpRunning], []);
  assert.deepEqual((existsSync(join(config.stateDir, 'netd')) ? readdirSync(join(config.stateDir, 'netd')) : []).filter((f) => f.endsWith('.json')), []);
  assertGolden('netd/masquerade.log', log);
});

test('masquerade in a warm netns: the prewired bridge and TAP are taken over, its isolation table removed; rewarm makes it warm again', async (t) => {
  const { host, manager } = await start(t);
  const warm = await manager.createWarmNetns();
  const from = host.section('setup in warm netns');
  await manager.setup(params('pod2', 'masquerade', { netnsName: warm.netnsName }));
  const plan = await manager.vmNetworkPlan({ sandboxId: 'pod2' });
  assert.ok(plan.ready && plan.tapsReady, 'the warm VM can keep its NIC: the TAP exists');
  const vm = await manager.vmNetwork({ sandboxId: 'pod2' });
  assert.ok(vm.ready);
  const log = host.text(from);
  assert.doesNotMatch(log, /tuntap add/, 'no new TAP');
  assert.match(log, /nft vmlet-warm-\S+: remove bridge vmlet-vbr/, 'the prewired isolation table goes');
  const result = await manager.teardown({ sandboxId: 'pod2', keepWarmNetns: true });
  assert.deepEqual(result, { keptNetns: warm.netnsName });
  assert.deepEqual(await manager.rewarmNetns({ netnsName: warm.netnsName }), { rewarmed: true });
});

test('a bad binding annotation is INVALID_ARGUMENT before anything is made; "bridge" is the tap binding', async (t) => {
  const { host, manager } = await start(t);
  await assert.rejects(manager.setup(params('pod3', 'slirp')), (err) => err instanceof InvalidArgumentError && /vmlet\.io\/network-binding/.test(err.message));
  assert.deepEqual(host.describe(), []);
  assert.doesNotMatch(host.text(), /netns create/);
  await manager.setup(params('pod4', 'bridge'));
  const vm = await manager.vmNetwork({ sandboxId: 'pod4' });
  assert.ok(vm.ready);
  assert.equal(vm.network.interfaces[0]!.ips[0]!.address, '198.18.110.2');
  await manager.teardown({ sandboxId: 'pod4' });
});

const MULTUS = 'k8s.v1.cni.cncf.io/networks';

test('per interface: a Multus JSON element masquerades net1 (next block, no default route) while eth0 stays bridged; all undone', async (t) => {
  const { host, manager } = await start(t);
  const setup = await manager.setup(params('pod5', undefined, { annotations: { [MULTUS]: '[{"name":"sidenet","vmlet.io/network-binding":"masquerade"}]' } }));
  assert.deepEqual(setup.podIps, ['198.18.110.2']);
  const vm = await manager.vmNetwork({ sandboxId: 'pod5' });
  assert.ok(vm.ready, JSON.stringify(vm));
  const [eth0, net1] = vm.network.interfaces;
  assert.deepEqual(eth0!.ips, [{ family: 4, address: '198.18.110.2', prefixLength: 24, gateway: '198.18.110.1' }], 'eth0 keeps the tap binding');
  assert.deepEqual(net1!.ips, [{ family: 4, address: '10.0.3.2', prefixLength: 24 }], 'net1: the second block, no gateway');
  assert.deepEqual(net1!.routes, [], 'no default route through a secondary network');
  const status = await manager.status({ sandboxId: 'pod5' });
  assert.deepEqual(status?.interfaces.map((i) => i.kind), ['tap', 'masquerade']);
  const masq = status!.interfaces[1] as { uplink: { name: string; podAddress: string }; ports: unknown; table: string };
  assert.deepEqual(masq.uplink, { name: 'net1', podAddress: '198.18.111.3', ipv6: true });
  assert.deepEqual(masq.ports, [{ protocol: 'tcp', port: 80 }], 'the pod\'s declared ports');
  const log = host.text();
  assert.match(log, new RegExp(`nft vmlet-pod5: install ip ${masq.table}`));
  assert.match(log, /dhcp start \/run\/netns\/vmlet-pod5: .*10\.0\.3\.2\/24/);
  const from = host.section('teardown pod5');
  await manager.teardown({ sandboxId: 'pod5' });
  assert.match(host.text(from), new RegExp(`nft vmlet-pod5: remove ip ${masq.table}`));
  assert.deepEqual(host.describe(), [], 'netns left');
});

test('per interface: the pod annotation masquerades eth0, an element "bridge" keeps net1 bridged; a bad element value changes nothing', async (t) => {
  const { host, manager } = await start(t);
  await manager.setup(params('pod6', undefined, { annotations: { 'vmlet.io/network-binding': 'masquerade', [MULTUS]: '[{"name":"sidenet","vmlet.io/network-binding":"bridge"}]' } }));
  assert.ok((await manager.vmNetwork({ sandboxId: 'pod6' })).ready);
  const wired = await manager.status({ sandboxId: 'pod6' });
  assert.deepEqual(wired?.interfaces.map((i) => i.kind), ['masquerade', 'tap']);
  await manager.teardown({ sandboxId: 'pod6' });
  await assert.rejects(
    manager.setup(params('pod7', undefined, { annotations: { [MULTUS]: '[{"name":"sidenet","vmlet.io/network-binding":"slirp"}]' } })),
    (err) => err instanceof InvalidArgumentError && /vmlet\.io\/network-binding "slirp" is not one of bridge, masquerade/.test(err.message),
  );
  assert.deepEqual(host.describe(), []);
});
