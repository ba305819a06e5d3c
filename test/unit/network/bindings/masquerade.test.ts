import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBatch } from '../../../../src/network/iproute.js';
import {
  masqueradeIpv6Network,
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
import { ipv6ServicesFor } from '../../../../src/network/ipv6/services.js';
import { linkLocalFromMac } from '../../../../src/network/ipv6/address.js';
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

test('the internal networks of the interface at position i: the i-th block of the CIDR\'s size, IPv4 and IPv6; bad CIDRs and overflows refused', () => {
  assert.deepEqual(masqueradeNetwork('10.0.2.0/24', 1), { cidr: '10.0.3.0/24', gateway: '10.0.3.1', vm: '10.0.3.2', prefixLength: 24 });
  assert.deepEqual(masqueradeNetwork('172.31.0.0/30', 3), { cidr: '172.31.0.12/30', gateway: '172.31.0.13', vm: '172.31.0.14', prefixLength: 30 });
  assert.deepEqual(masqueradeIpv6Network('fd10:0:2::/120'), { cidr: 'fd10:0:2::/120', gateway: 'fd10:0:2::1', vm: 'fd10:0:2::2', prefixLength: 120 });
  assert.deepEqual(masqueradeIpv6Network('fd10:0:2::/120', 2), { cidr: 'fd10:0:2::200/120', gateway: 'fd10:0:2::201', vm: 'fd10:0:2::202', prefixLength: 120 });
  assert.deepEqual(masqueradeIpv6Network('fd10:0:2::/64', 1), { cidr: 'fd10:0:2:1::/64', gateway: 'fd10:0:2:1::1', vm: 'fd10:0:2:1::2', prefixLength: 64 });
  assert.throws(() => masqueradeNetwork('255.255.255.0/24', 1), FailedPreconditionError);
  assert.throws(() => masqueradeIpv6Network('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120', 1), FailedPreconditionError);
  for (const bad of ['fd10:0:2::1/120', 'fd10::/63', 'fd10::/127', '10.0.2.0/24', 'fd10::']) assert.throws(() => masqueradeIpv6Network(bad), InvalidArgumentError, bad);
});

const veth6: LinkState = { ...veth, mac: '0a:58:c6:13:36:05' };
const snapshot6: InterfaceSnapshot = { ...snapshot, links: [snapshot.links[0]!, veth6], link: veth6 };
const dualStack = (request: NonNullable<BindingContext['masquerade']>, index = 0): BindingContext => ({
  ...ctx(request),
  index,
  cniInterface: {
    name: 'eth0', mac: veth6.mac,
    ips: [{ family: 4, address: '198.19.54.5', prefixLength: 24, gateway: '198.19.54.1' }, { family: 6, address: 'fd54:1:2:1::5', prefixLength: 64, gateway: 'fd54:1:2:1::1' }],
    routes: [{ destination: '0.0.0.0/0', gateway: '198.19.54.1' }, { destination: '::/0', gateway: 'fd54:1:2:1::1' }],
  },
});
const options6 = (index = 0) => ({
  ...options,
  internal: masqueradeNetwork('10.0.2.0/24', index),
  internal6: masqueradeIpv6Network('fd10:0:2::/120', index),
  sysctlsBefore: { ...options.sysctlsBefore, 'net.ipv6.conf.all.forwarding': '0' },
});

test('dual stack: the VM gets an internal IPv6 address too, NAT66 in an ip6 table of the same name, RA + DHCPv6 for it (golden)', () => {
  const state = planMasquerade(dualStack({ ports: [{ protocol: 'tcp', port: 22 }] }), snapshot6, options6());
  assert.deepEqual(state.vm.ips, [
    { family: 4, address: '10.0.2.2', prefixLength: 24, gateway: '10.0.2.1' },
    { family: 6, address: 'fd10:0:2::2', prefixLength: 120, gateway: 'fd10:0:2::1' },
  ]);
  assert.deepEqual(state.vm.routes, [{ destination: '0.0.0.0/0', gateway: '10.0.2.1' }, { destination: '::/0', gateway: 'fd10:0:2::1' }]);
  assert.deepEqual(state.ipv6, { podAddress: 'fd54:1:2:1::5', internal: masqueradeIpv6Network('fd10:0:2::/120'), bridgeLinkLocal: linkLocalFromMac(state.bridge.mac) });
  const script = masqueradeScript(state);
  assert.match(script, /^table ip6 vmlet-01234567-masq-vbr\S+ \{$/m);
  assert.match(script, /ip6 daddr fd54:1:2:1::5 tcp dport 22 counter dnat to fd10:0:2::2 comment "inbound"/);
  assert.match(script, /oifname "eth0" ip6 saddr fd10:0:2::\/120 counter snat to fd54:1:2:1::5 comment "outbound"/);
  // The responder serves the internal address: lease, on-link internal prefix, the bridge as default router.
  const [service] = ipv6ServicesFor([state], { nameservers: ['fd54:1:2:53::53', '198.19.54.53'], search: ['masq.example'], options: [] });
  assert.equal(service?.bridge, state.bridge.name);
  assert.deepEqual(service?.lease, { address: 'fd10:0:2::2', prefixLength: 120, dns: ['fd54:1:2:53::53'], search: ['masq.example'], leaseSeconds: 86_400 });
  assert.deepEqual(service?.advert.prefixes.map((p) => [p.prefix, p.length, p.onLink, p.autonomous]), [['fd10:0:2::', 120, true, false]]);
  assert.equal(service?.advert.routerLifetime, 1800);
  const wired = [...snapshot6.links, { name: state.bridge.name, mtu: 1450, up: true, group: state.linkGroup, kind: 'bridge' }, { name: state.tap.name, mtu: 1450, up: true, group: state.linkGroup, kind: 'tun' }];
  const text = [
    '# plan',
    JSON.stringify(state, null, 2),
    '# wire: ip batch',
    formatBatch(masqueradeWireCommands(state)).trimEnd(),
    '# wire: nft',
    script.trimEnd(),
    '# wire: sysctls',
    JSON.stringify(masqueradeSysctls(state.bridge.name, true), null, 2),
    '# unwire: ip batch',
    formatBatch(masqueradeUnwireCommands(state, wired)).trimEnd(),
    '# unwire: nft',
    masqueradeRemovalScript(state).trimEnd(),
    '',
  ].join('\n');
  assertGolden('network/masquerade-dual-stack.txt', text);
});

test('IPv6 only where CNI gave the interface an IPv6 address and an IPv6 CIDR is configured; a pod IPv6 address inside it refused', () => {
  const v4only = planMasquerade(ctx({ ports: [] }), snapshot, options6());
  assert.equal(v4only.ipv6, undefined);
  assert.ok(v4only.vm.ips.every((ip) => ip.family === 4));
  assert.doesNotMatch(masqueradeScript(v4only), /ip6/);
  assert.equal(masqueradeRemovalScript(v4only), `add table ip ${v4only.table}\ndelete table ip ${v4only.table}\n`);
  assert.deepEqual(ipv6ServicesFor([v4only], { nameservers: [], search: [], options: [] }), []);
  const noCidr = planMasquerade(dualStack({ ports: [] }), snapshot6, options);
  assert.equal(noCidr.ipv6, undefined, 'without an IPv6 CIDR the VM stays IPv4 only');
  const inside = dualStack({ ports: [] });
  inside.cniInterface.ips[1] = { family: 6, address: 'fd10:0:2::9', prefixLength: 64 };
  assert.throws(() => planMasquerade(inside, snapshot6, options6()), /inside the masquerade IPv6 CIDR/);
});

test('a secondary network\'s interface: its own blocks, no default route or gateway, CNI\'s other routes through the internal gateways', () => {
  const secondary = dualStack({ ports: [], secondary: true }, 1);
  secondary.cniInterface.ips = secondary.cniInterface.ips.map(({ gateway: _g, ...ip }) => ip);
  secondary.cniInterface.routes = [{ destination: '198.19.0.0/16' }, { destination: 'fd54:1::/32' }];
  const state = planMasquerade(secondary, snapshot6, options6(1));
  assert.deepEqual(state.vm.ips, [{ family: 4, address: '10.0.3.2', prefixLength: 24 }, { family: 6, address: 'fd10:0:2::102', prefixLength: 120 }]);
  assert.deepEqual(state.vm.routes, [{ destination: '198.19.0.0/16', gateway: '10.0.3.1' }, { destination: 'fd54:1::/32', gateway: 'fd10:0:2::101' }]);
  assert.match(state.bridge.name, /01$/, 'the devices of interface 1');
  const [lease] = leasesFor({ interfaces: [state.vm], dns: { nameservers: [], search: [], options: [] } });
  assert.equal(lease?.ip, '10.0.3.2');
  const [service] = ipv6ServicesFor([state], { nameservers: [], search: [], options: [] });
  assert.equal(service?.advert.routerLifetime, 0, 'no IPv6 default route through a secondary network');
});
