import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBatch } from '../../../../src/network/iproute.js';
import {
  masqueradeNetwork,
  masqueradeRemovalScript,
  masqueradeRequestOf,
  masqueradeScript,
  masqueradeSysctls,
  masqueradeTableName,
  masqueradeUnwireCommands,
  masqueradeWireCommands,
  planMasquerade,
} from '../../../../src/network/bindings/masquerade_plan.js';
import type { InterfaceSnapshot, LinkState } from '../../../../src/network/bindings/snapshot.js';
import type { BindingContext } from '../../../../src/network/bindings/types.js';
import { leasesFor } from '../../../../src/network/dhcp/leases.js';
import { FailedPreconditionError, InvalidArgumentError } from '../../../../src/errors.js';
import { assertGolden } from '../../../helpers/golden.js';

const veth: LinkState = { name: 'eth0', mtu: 1450, up: true, group: 0, kind: 'veth', mac: '0a:58:c6:12:e6:05', addrGenMode: 'eui64' };
const snapshot: InterfaceSnapshot = {
  links: [{ name: 'lo', mtu: 65536, up: true, group: 0 }, veth],
  link: veth,
  addresses: [{ family: 4, local: '198.18.230.5', prefixLength: 24, scope: 'global', flags: [] }],
  routes: [{ family: 4, dst: '0.0.0.0/0', type: 'unicast', gateway: '198.18.230.1', table: 'main', protocol: 'boot', scope: 'global', onlink: false, metrics: {} }],
};
const ctx = (ports: BindingContext['masquerade']): BindingContext => ({
  netnsName: 'vmlet-pod1',
  netnsPath: '/run/netns/vmlet-pod1',
  sandboxId: 'pod1',
  index: 0,
  cniInterface: { name: 'eth0', mac: veth.mac, ips: [{ family: 4, address: '198.18.230.5', prefixLength: 24, gateway: '198.18.230.1' }], routes: [{ destination: '0.0.0.0/0', gateway: '198.18.230.1' }] },
  ...(ports ? { masquerade: ports } : {}),
});
const options = { internal: masqueradeNetwork('10.0.2.0/24'), ownerId: '0123456789abcdef', sysctlsBefore: { 'net.ipv4.conf.all.forwarding': '0', 'net.ipv4.conf.all.send_redirects': '1' } };

test('the internal network of a CIDR: gateway .1, VM .2; bad CIDRs refused', () => {
  assert.deepEqual(masqueradeNetwork('10.0.2.0/24'), { cidr: '10.0.2.0/24', gateway: '10.0.2.1', vm: '10.0.2.2', prefixLength: 24 });
  assert.deepEqual(masqueradeNetwork('172.31.0.0/30'), { cidr: '172.31.0.0/30', gateway: '172.31.0.1', vm: '172.31.0.2', prefixLength: 30 });
  for (const bad of ['10.0.2.5/24', '10.0.2.0/31', 'fd10:0:2::/120', '10.0.2.0', 'x']) assert.throws(() => masqueradeNetwork(bad), InvalidArgumentError, bad);
});

test('the annotation: masquerade with the declared container ports (deduplicated, sorted), bridge or absent: none, anything else refused', () => {
  const mappings = [
    { protocol: 'tcp' as const, containerPort: 8080, hostPort: 0, hostIP: '' },
    { protocol: 'udp' as const, containerPort: 53, hostPort: 0, hostIP: '' },
    { protocol: 'tcp' as const, containerPort: 80, hostPort: 8081, hostIP: '' },
    { protocol: 'tcp' as const, containerPort: 8080, hostPort: 9090, hostIP: '127.0.0.1' },
  ];
  assert.deepEqual(masqueradeRequestOf({ 'vmlet.io/network-binding': 'masquerade' }, mappings), {
    ports: [{ protocol: 'tcp', port: 80 }, { protocol: 'tcp', port: 8080 }, { protocol: 'udp', port: 53 }],
  });
  assert.deepEqual(masqueradeRequestOf({ 'vmlet.io/network-binding': 'masquerade' }, []), { ports: [] });
  assert.equal(masqueradeRequestOf({ 'vmlet.io/network-binding': 'bridge' }, mappings), undefined);
  assert.equal(masqueradeRequestOf({}, mappings), undefined);
  assert.throws(() => masqueradeRequestOf({ 'vmlet.io/network-binding': 'Masquerade' }, []), /not one of bridge, masquerade/);
  assert.throws(() => masqueradeRequestOf({ 'vmlet.io/network-binding': 'masquerade' }, [{ protocol: 'tcp', containerPort: 0, hostPort: 0, hostIP: '' }]), InvalidArgumentError);
});

test('declared ports: the VM gets the internal address; plan, batches, NAT table and removal (golden)', () => {
  const state = planMasquerade(ctx({ ports: [{ protocol: 'tcp', port: 80 }, { protocol: 'tcp', port: 8080 }, { protocol: 'udp', port: 53 }] }), snapshot, options);
  assert.equal(state.kind, 'masquerade');
  assert.equal(state.uplink.podAddress, '198.18.230.5');
  assert.equal(state.vm.mac, veth.mac, 'the VM keeps the pod MAC');
  assert.deepEqual(state.vm.ips, [{ family: 4, address: '10.0.2.2', prefixLength: 24, gateway: '10.0.2.1' }]);
  assert.deepEqual(state.vm.routes, [{ destination: '0.0.0.0/0', gateway: '10.0.2.1' }]);
  assert.equal(state.table, masqueradeTableName('0123456789abcdef', state.bridge.name));
  assert.match(state.table, /^vmlet-01234567-masq-vbr/);
  const [lease] = leasesFor({ interfaces: [state.vm], dns: { nameservers: [], search: [], options: [] } });
  assert.equal(lease?.ip, '10.0.2.2', 'DHCP hands the VM the internal address');
  const wired = [...snapshot.links, { name: state.bridge.name, mtu: 1450, up: true, group: state.linkGroup, kind: 'bridge' }, { name: state.tap.name, mtu: 1450, up: true, group: state.linkGroup, kind: 'tun' }];
  const unwire = masqueradeUnwireCommands(state, wired);
  assert.ok(!JSON.stringify(unwire).includes('eth0'), 'the veth is never touched');
  const text = [
    '# plan',
    JSON.stringify(state, null, 2),
    '# wire: ip batch',
    formatBatch(masqueradeWireCommands(state)).trimEnd(),
    '# wire: nft',
    masqueradeScript(state).trimEnd(),
    '# wire: sysctls',
    JSON.stringify(masqueradeSysctls(state.bridge.name), null, 2),
    '# unwire: ip batch',
    formatBatch(unwire).trimEnd(),
    '# unwire: nft',
    masqueradeRemovalScript(state).trimEnd(),
    '',
  ].join('\n');
  assertGolden('network/masquerade-plan.txt', text);
});

test('no declared ports: every port of the pod IP goes to the VM (golden); a prewired bridge and TAP are taken over', () => {
  const state = planMasquerade({ ...ctx({ ports: [] }), prewired: { bridge: 'vbrwarm0000000', tap: 'vtapwarm000000' } }, snapshot, options);
  assert.equal(state.prewired, true);
  const batch = masqueradeWireCommands(state);
  assert.ok(!batch.some((c) => c[0] === 'tuntap' || (c[1] === 'add' && c[0] === 'link')), 'nothing is created');
  const script = masqueradeScript(state);
  assert.match(script, /ip daddr 198\.18\.230\.5 counter dnat to 10\.0\.2\.2 comment "inbound"\n/);
  assert.doesNotMatch(script, /dport [^\n]*dnat/, "no port match on the DNAT rules");
  assertGolden('network/masquerade-all-ports.nft', script);
});

test('refused: no masquerade request, no IPv4 pod address, a pod IP inside the internal CIDR, a non-veth, leftovers', () => {
  assert.throws(() => planMasquerade(ctx(undefined), snapshot, options), InvalidArgumentError);
  const v6only = { ...ctx({ ports: [] }), cniInterface: { name: 'eth0', ips: [{ family: 6 as const, address: 'fd00::5', prefixLength: 64 }], routes: [] } };
  assert.throws(() => planMasquerade(v6only, snapshot, options), /no IPv4 address/);
  const inside = { ...ctx({ ports: [] }), cniInterface: { name: 'eth0', ips: [{ family: 4 as const, address: '10.0.2.7', prefixLength: 24 }], routes: [] } };
  assert.throws(() => planMasquerade(inside, snapshot, options), /inside the masquerade CIDR/);
  const device = { ...veth, kind: undefined };
  assert.throws(() => planMasquerade(ctx({ ports: [] }), { ...snapshot, link: device, links: [device] }, options), FailedPreconditionError);
  const state = planMasquerade(ctx({ ports: [] }), snapshot, options);
  const left = { ...snapshot, links: [...snapshot.links, { name: state.bridge.name, mtu: 1500, up: false, group: 0, kind: 'bridge' }] };
  assert.throws(() => planMasquerade(ctx({ ports: [] }), left, options), /already exist/);
});
