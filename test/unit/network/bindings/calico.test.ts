import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBatch } from '../../../../src/network/iproute.js';
import { isolationScript } from '../../../../src/network/isolation.js';
import { planTap, tapUnwireCommands, tapWireCommands } from '../../../../src/network/bindings/tap.js';
import { calicoArpScript, calicoGatewayOf, calicoSysctls, calicoWireCommands, fakeGatewayFor } from '../../../../src/network/bindings/calico.js';
import type { InterfaceSnapshot, LinkState } from '../../../../src/network/bindings/snapshot.js';
import type { BindingContext } from '../../../../src/network/bindings/types.js';
import { FailedPreconditionError, InvalidArgumentError } from '../../../../src/errors.js';
import { assertGolden } from '../../../helpers/golden.js';

// What Calico leaves in a pod netns: a /32 and two routes through its link-scope gateway.
const veth: LinkState = { name: 'eth0', mtu: 1440, up: true, group: 0, kind: 'veth', mac: '5a:c6:94:61:2e:10', addrGenMode: 'eui64' };
const snapshot: InterfaceSnapshot = {
  links: [{ name: 'lo', mtu: 65536, up: true, group: 0 }, veth],
  link: veth,
  addresses: [{ family: 4, local: '198.18.214.37', prefixLength: 32, scope: 'global', flags: [] }],
  routes: [
    { family: 4, dst: '169.254.1.1/32', type: 'unicast', table: 'main', protocol: 'boot', scope: 'link', onlink: false, metrics: {} },
    { family: 4, dst: '0.0.0.0/0', type: 'unicast', gateway: '169.254.1.1', table: 'main', protocol: 'boot', scope: 'global', onlink: false, metrics: {} },
  ],
};
const ctx: BindingContext = {
  netnsName: 'vmlet-pod1',
  netnsPath: '/run/netns/vmlet-pod1',
  sandboxId: 'pod1',
  index: 0,
  cniInterface: {
    name: 'eth0',
    mac: '5a:c6:94:61:2e:10',
    ips: [{ family: 4, address: '198.18.214.37', prefixLength: 32, gateway: '169.254.1.1' }],
    routes: [{ destination: '0.0.0.0/0', gateway: '169.254.1.1' }],
  },
};
const calico = { subnet: 24, sysctlsBefore: { 'net.ipv4.conf.all.forwarding': '0', 'net.ipv4.conf.all.send_redirects': '1' } };

test('a Calico result: the VM gets the pod IP\'s /24 and the fake gateway; plan, batches and rules (golden)', () => {
  const state = planTap(ctx, snapshot, { calico });
  assert.deepEqual(state.vm.ips, [{ family: 4, address: '198.18.214.37', prefixLength: 24, gateway: '198.18.214.254' }]);
  assert.deepEqual(state.vm.routes, [{ destination: '0.0.0.0/0', gateway: '198.18.214.254' }]);
  const gw = state.calico!;
  const afterWiring = [...snapshot.links, { name: state.bridge.name, mtu: 1440, up: true, group: state.linkGroup, kind: 'bridge' }, { name: state.tap.name, mtu: 1440, up: true, group: state.linkGroup, kind: 'tun' }];
  const text = [
    '# plan',
    JSON.stringify(state, null, 2),
    '# wire: tap batch',
    formatBatch(tapWireCommands(state)).trimEnd(),
    '# wire: the bridge as the gateway',
    formatBatch(calicoWireCommands(gw, state.bridge.name, state.uplink.routes)).trimEnd(),
    '# wire: sysctls',
    JSON.stringify(calicoSysctls(state.bridge.name), null, 2),
    '# wire: ARP sender rewrite',
    calicoArpScript(gw, state.bridge.name).trimEnd(),
    '# wire: isolation (ARP for the fake gateway stays inside)',
    isolationScript({ uplink: 'eth0', bridge: state.bridge.name, bridgeMac: state.bridge.mac, tap: state.tap.name, localAddresses: [gw.fakeGateway] }).trimEnd(),
    '# unwire: the veth back as Calico left it',
    formatBatch(tapUnwireCommands(state, afterWiring)).trimEnd(),
    '',
  ].join('\n');
  assertGolden('network/calico-plan.txt', text);
});

test('the fake gateway: the /N\'s last host address, the one below when that is the pod IP; bad prefixes refused', () => {
  assert.equal(fakeGatewayFor('198.18.214.37', 24), '198.18.214.254');
  assert.equal(fakeGatewayFor('198.18.214.254', 24), '198.18.214.253');
  assert.equal(fakeGatewayFor('198.18.214.37', 26), '198.18.214.62');
  assert.equal(fakeGatewayFor('198.18.214.37', 16), '198.18.255.254');
  assert.throws(() => fakeGatewayFor('198.18.214.37', 31), InvalidArgumentError);
  assert.throws(() => fakeGatewayFor('fd00::1', 24), InvalidArgumentError);
});

test('only a /32 with a gateway is Calico-shaped; an ordinary result is left as CNI gave it', () => {
  assert.equal(calicoGatewayOf({ name: 'eth0', ips: [{ family: 4, address: '198.18.214.37', prefixLength: 24, gateway: '198.18.214.1' }], routes: [] }), undefined);
  assert.equal(calicoGatewayOf({ name: 'eth0', ips: [{ family: 4, address: '198.18.214.37', prefixLength: 32 }], routes: [] }), undefined);
  // The gateway of the default route counts as well.
  assert.deepEqual(calicoGatewayOf({ name: 'eth0', ips: [{ family: 4, address: '198.18.214.37', prefixLength: 32 }], routes: [{ destination: '0.0.0.0/0', gateway: '169.254.1.1' }] })?.gateway, '169.254.1.1');
  const plain = planTap({ ...ctx, cniInterface: { ...ctx.cniInterface, ips: [{ family: 4, address: '198.18.214.37', prefixLength: 24, gateway: '198.18.214.1' }], routes: [] } }, snapshot, { calico });
  assert.equal(plain.calico, undefined);
  assert.equal(plain.vm.ips[0]!.prefixLength, 24);
});

test('without Calico settings a Calico result is refused, not handed to the VM unreachable', () => {
  assert.throws(() => planTap(ctx, snapshot), FailedPreconditionError);
});
