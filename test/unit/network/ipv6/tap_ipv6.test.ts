import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBatch } from '../../../../src/network/iproute.js';
import { planTap, TapBinding, tapUnwireCommands, tapWireCommands } from '../../../../src/network/bindings/tap.js';
import type { InterfaceSnapshot, LinkState } from '../../../../src/network/bindings/snapshot.js';
import type { BindingContext } from '../../../../src/network/bindings/types.js';
import { DhcpIsolation } from '../../../../src/network/isolation.js';
import { ipv6Gateway } from '../../../../src/network/ipv6/tap_ipv6.js';
import { ipv6ServicesFor } from '../../../../src/network/ipv6/services.js';
import type { SysctlRunner } from '../../../../src/network/sysctl.js';
import { FailedPreconditionError } from '../../../../src/errors.js';
import { assertGolden } from '../../../helpers/golden.js';
import { FakeIpRunner, FakeNftRunner } from '../fakes.js';

// What Debian's bridge plugin leaves for a dual-stack range: both addresses, both default routes.
const veth: LinkState = { name: 'eth0', mtu: 1500, up: true, group: 0, kind: 'veth', mac: '8e:88:c2:92:a5:c3', addrGenMode: 'eui64' };
const snapshot: InterfaceSnapshot = {
  links: [{ name: 'lo', mtu: 65536, up: true, group: 0 }, veth],
  link: veth,
  addresses: [
    { family: 4, local: '198.18.232.2', prefixLength: 24, broadcast: '198.18.232.255', scope: 'global', flags: [] },
    { family: 6, local: 'fd12:3456:789a:1::2', prefixLength: 64, scope: 'global', flags: [] },
    { family: 6, local: 'fe80::8c88:c2ff:fe92:a5c3', prefixLength: 64, scope: 'link', flags: [] },
  ],
  routes: [
    { family: 4, dst: '0.0.0.0/0', type: 'unicast', gateway: '198.18.232.1', table: 'main', protocol: 'boot', scope: 'global', onlink: false, metrics: {} },
    { family: 6, dst: '::/0', type: 'unicast', gateway: 'fd12:3456:789a:1::1', table: 'main', protocol: 'boot', onlink: false, metric: 1024, pref: 'medium', metrics: {} },
  ],
};
const ctx: BindingContext = {
  netnsName: 'vmlet-pod6',
  netnsPath: '/run/netns/vmlet-pod6',
  sandboxId: 'pod6',
  index: 0,
  cniInterface: {
    name: 'eth0',
    mac: '8e:88:c2:92:a5:c3',
    ips: [
      { family: 4, address: '198.18.232.2', prefixLength: 24, gateway: '198.18.232.1' },
      { family: 6, address: 'fd12:3456:789a:1::2', prefixLength: 64, gateway: 'fd12:3456:789a:1::1' },
    ],
    routes: [{ destination: '0.0.0.0/0', gateway: '198.18.232.1' }, { destination: '::/0', gateway: 'fd12:3456:789a:1::1' }, { destination: 'fd00:99::/48' }],
  },
};
const ipv6 = { sysctlsBefore: { 'net.ipv6.conf.all.forwarding': '0' } };

test('a dual-stack interface: plan, wiring (the bridge as IPv6 router), unwiring back to the veth CNI left, services (golden)', () => {
  const state = planTap(ctx, snapshot, { ipv6 });
  assert.deepEqual(state.ipv6, { bridgeLinkLocal: state.ipv6!.bridgeLinkLocal, sysctlsBefore: { 'net.ipv6.conf.all.forwarding': '0' } });
  assert.match(state.ipv6!.bridgeLinkLocal, /^fe80::/);
  const afterWiring = [...snapshot.links, { name: state.bridge.name, mtu: 1500, up: true, group: state.linkGroup, kind: 'bridge' }, { name: state.tap.name, mtu: 1500, up: true, group: state.linkGroup, kind: 'tun' }];
  const unwire = tapUnwireCommands(state, afterWiring);
  // Everything CNI gave the veth comes back: both addresses, the link-local one, the IPv6 default route.
  const restored = formatBatch(unwire);
  for (const expected of ['address replace fd12:3456:789a:1::2/64', 'address replace fe80::8c88:c2ff:fe92:a5c3/64', 'route replace ::/0 via fd12:3456:789a:1::1', 'addrgenmode eui64']) {
    assert.ok(restored.includes(expected), `${expected} in\n${restored}`);
  }
  const services = ipv6ServicesFor([state], { nameservers: ['198.18.232.1', 'fd12:3456:789a:53::53'], search: ['example.test'], options: [] });
  assert.equal(services.length, 1);
  const text = [
    '# plan',
    JSON.stringify(state, null, 2),
    '# wire',
    formatBatch(tapWireCommands(state)).trimEnd(),
    '# unwire',
    restored.trimEnd(),
    '# IPv6 service of the bridge',
    JSON.stringify({ ...services[0], serverDuid: services[0]!.serverDuid.toString('hex') }, null, 2),
    '',
  ].join('\n');
  assertGolden('network/ipv6/tap-dual-stack.txt', text);
});

test('the IPv6 gateway: the address\'s, else the ::/0 route\'s; none gives a bridge that is no default router', () => {
  const vm = planTap(ctx, snapshot, { ipv6 }).vm;
  assert.equal(ipv6Gateway(vm), 'fd12:3456:789a:1::1');
  assert.equal(ipv6Gateway({ ...vm, ips: vm.ips.map(({ gateway: _, ...ip }) => ip) }), 'fd12:3456:789a:1::1');
  const noGateway = { ...ctx, cniInterface: { ...ctx.cniInterface, ips: [{ family: 6 as const, address: 'fd12:3456:789a:1::2', prefixLength: 64 }], routes: [] } };
  const state = planTap(noGateway, snapshot, { ipv6 });
  assert.equal(ipv6Gateway(state.vm), undefined);
  assert.doesNotMatch(formatBatch(tapWireCommands(state)), /^route replace ::\/0/m, 'no default route in the netns without a gateway');
  const [service] = ipv6ServicesFor([state], { nameservers: [], search: [], options: [] });
  assert.equal(service!.advert.routerLifetime, 0);
  assert.deepEqual(service!.advert.routes, []);
  assert.equal(service!.advert.dns, undefined);
});

test('an IPv4-only interface gets no IPv6 state or service; IPv6 without IPv6 settings is refused', () => {
  const v4 = { ...ctx, cniInterface: { ...ctx.cniInterface, ips: [ctx.cniInterface.ips[0]!], routes: [ctx.cniInterface.routes[0]!] } };
  const state = planTap(v4, snapshot, { ipv6 });
  assert.equal(state.ipv6, undefined);
  assert.deepEqual(ipv6ServicesFor([state], { nameservers: [], search: [], options: [] }), []);
  assert.throws(() => planTap(ctx, snapshot), FailedPreconditionError);
});

class FakeSysctl implements SysctlRunner {
  values: Record<string, string> = { 'net.ipv6.conf.all.forwarding': '0' };
  readonly log: string[] = [];
  async read(netns: string, keys: readonly string[]) {
    this.log.push(`read ${netns} ${keys.join(' ')}`);
    return Object.fromEntries(keys.map((k) => [k, this.values[k] ?? '']));
  }
  async write(netns: string, values: Readonly<Record<string, string>>) {
    this.log.push(`write ${netns} ${JSON.stringify(values)}`);
    Object.assign(this.values, values);
  }
}

test('TapBinding turns forwarding on while wired and puts it back on unwiring', async () => {
  const ip = new FakeIpRunner();
  ip.onShow = () => [snapshotLinksJson()];
  const sysctl = new FakeSysctl();
  const binding = new TapBinding({ ip, isolation: new DhcpIsolation(new FakeNftRunner()), ipv6: { sysctl } });
  const planned = await binding.plan(ctx, snapshot);
  assert.deepEqual(planned.ipv6?.sysctlsBefore, { 'net.ipv6.conf.all.forwarding': '0' });
  await binding.wire(ctx, planned);
  assert.equal(sysctl.values['net.ipv6.conf.all.forwarding'], '1');
  await binding.unwire(ctx, planned);
  assert.equal(sysctl.values['net.ipv6.conf.all.forwarding'], '0');
  assert.deepEqual(sysctl.log, [
    'read vmlet-pod6 net.ipv6.conf.all.forwarding',
    'write vmlet-pod6 {"net.ipv6.conf.all.forwarding":"1"}',
    'write vmlet-pod6 {"net.ipv6.conf.all.forwarding":"0"}',
  ]);
});

function snapshotLinksJson() {
  return [
    { ifname: 'lo', mtu: 65536, flags: ['UP'], group: 'default' },
    { ifname: 'eth0', mtu: 1500, flags: ['UP'], group: 'default', link_type: 'ether', address: '4e:da:e5:15:0f:e5', linkinfo: { info_kind: 'veth' } },
  ];
}
