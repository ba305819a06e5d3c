import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { formatBatch } from '../../../../src/network/iproute.js';
import { DhcpIsolation, isolationRemovalScript, isolationScript } from '../../../../src/network/isolation.js';
import { TapBinding, planTap, tapReleaseCommands, tapUnwireCommands, tapWireCommands, linkGroupFor } from '../../../../src/network/bindings/tap.js';
import { parseLinks, parseSnapshot, type LinkState } from '../../../../src/network/bindings/snapshot.js';
import type { BindingContext } from '../../../../src/network/bindings/types.js';
import { bindInterface } from '../../../../src/network/bindings/binding.js';
import { FailedPreconditionError, InternalError, InvalidArgumentError, NotFoundError } from '../../../../src/errors.js';
import { assertGolden } from '../../../helpers/golden.js';
import { FakeIpRunner, FakeNftRunner } from '../fakes.js';
import { prewiredNames } from '../../../../src/network/names.js';

const docs = JSON.parse(readFileSync(new URL('../fixtures/veth-snapshot.json', import.meta.url), 'utf8')) as unknown[];
const snapshot = parseSnapshot('eth0', docs);

const ctx: BindingContext = {
  netnsName: 'vmlet-pod1',
  netnsPath: '/run/netns/vmlet-pod1',
  sandboxId: 'pod1',
  index: 0,
  cniInterface: {
    name: 'eth0',
    mac: '0a:58:c6:12:05:07',
    ips: [{ family: 4, address: '198.18.5.7', prefixLength: 24, gateway: '198.18.5.1' }],
    routes: [{ destination: '0.0.0.0/0', gateway: '198.18.5.1' }],
  },
};

function link(name: string, extra: Partial<LinkState> = {}): LinkState {
  return { name, mtu: 1500, up: true, group: 0, ...extra };
}

function setup() {
  const ip = new FakeIpRunner();
  const nft = new FakeNftRunner();
  const binding = new TapBinding({ ip, isolation: new DhcpIsolation(nft) });
  return { ip, nft, binding };
}

test('plan: the VM takes over the veth MAC, MTU and the CNI addressing', () => {
  const state = planTap(ctx, snapshot);
  assert.equal(state.kind, 'tap');
  assert.deepEqual(state.vm, {
    name: 'eth0',
    mac: '0a:58:c6:12:05:07',
    mtu: 1500,
    ips: ctx.cniInterface.ips,
    routes: ctx.cniInterface.routes,
    binding: { kind: 'tap', tap: state.tap.name, bridge: state.bridge.name },
  });
  assert.notEqual(state.uplink.wiredMac, state.uplink.originalMac);
  assert.notEqual(state.bridge.mac, state.uplink.wiredMac);
  assert.equal(state.uplink.addresses.length, 5);
  assert.equal(state.uplink.routes.length, 7);
  assert.equal(state.linkGroup, linkGroupFor(0));
  // Persisted state must survive a JSON round trip unchanged.
  assert.deepEqual(JSON.parse(JSON.stringify(state)), state);
});

test('wire and unwire batches (golden)', () => {
  const state = planTap(ctx, snapshot, { queues: 4, tapOwner: { uid: 0, gid: 0 } });
  const wired = [
    ...snapshot.links,
    link(state.bridge.name, { group: state.linkGroup, kind: 'bridge' }),
    link(state.tap.name, { group: state.linkGroup, kind: 'tun' }),
  ];
  assertGolden(
    'network/tap-batches.txt',
    '# wire\n' +
      formatBatch(tapWireCommands(state)) +
      '# unwire, fully wired\n' +
      formatBatch(tapUnwireCommands(state, wired)) +
      '# unwire, failed right after creating the TAP (not yet in the group)\n' +
      formatBatch(
        tapUnwireCommands(state, [
          ...snapshot.links,
          link(state.bridge.name, { group: state.linkGroup, kind: 'bridge' }),
          link(state.tap.name, { kind: 'tun' }),
        ]),
      ) +
      '# unwire, the TAP name is held by a device that is not a TAP\n' +
      formatBatch(tapUnwireCommands(state, [...snapshot.links, link(state.tap.name, { group: state.linkGroup, kind: 'veth' })])) +
      '# unwire, veth already gone\n' +
      formatBatch(tapUnwireCommands(state, [link('lo')])),
  );
});

test('plan refuses what it cannot wire or would wire twice', () => {
  const names = planTap(ctx, snapshot);
  const cases: [string, typeof snapshot][] = [
    ['not a veth', { ...snapshot, link: { ...snapshot.link, kind: 'macvlan' } }],
    ['already a bridge port', { ...snapshot, link: { ...snapshot.link, master: 'br0' } }],
    ['bridge left over', { ...snapshot, links: [...snapshot.links, link(names.bridge.name)] }],
    ['TAP left over', { ...snapshot, links: [...snapshot.links, link(names.tap.name)] }],
  ];
  for (const [what, snap] of cases) assert.throws(() => planTap(ctx, snap), FailedPreconditionError, what);
  assert.throws(() => planTap(ctx, snapshot, { queues: 0 }), InvalidArgumentError);
  assert.throws(() => planTap(ctx, snapshot, { tapOwner: { uid: -1 } }), InvalidArgumentError);
  assert.throws(() => planTap({ ...ctx, cniInterface: { ...ctx.cniInterface, name: 'eth"0' } }, snapshot), InvalidArgumentError);
});

test('plan reads the interface with one ip process when no snapshot is given', async () => {
  const { ip, binding } = setup();
  ip.onShow = () => docs;
  const state = await binding.plan(ctx);
  assert.equal(ip.calls.length, 1);
  assert.equal(ip.calls[0]!.op, 'show');
  assert.equal(ip.calls[0]!.netns, 'vmlet-pod1');
  assert.deepEqual(state, planTap(ctx, snapshot));
});

test('wire applies one ip batch and one nft script in the pod netns', async () => {
  const { ip, nft, binding } = setup();
  const state = planTap(ctx, snapshot);
  const persisted: unknown[] = [];
  ip.onShow = () => docs;
  const result = await bindInterface(binding, ctx, async (s) => void persisted.push(structuredClone(s)));
  assert.deepEqual(result, state);
  assert.deepEqual(persisted, [state]);
  assert.deepEqual(
    ip.calls.map((c) => [c.op, c.netns]),
    [
      ['show', 'vmlet-pod1'],
      ['apply', 'vmlet-pod1'],
    ],
  );
  assert.deepEqual(ip.calls[1]!.commands, tapWireCommands(state));
  // The table with the redirect of the VM's unicast DHCP to the server address, which needs the bridge's MAC.
  assert.deepEqual(nft.scripts, [{ netns: 'vmlet-pod1', script: isolationScript({ uplink: 'eth0', bridge: state.bridge.name, bridgeMac: state.bridge.mac, tap: state.tap.name }) }]);
  assert.match(nft.scripts[0]!.script, new RegExp(`ether daddr set ${state.bridge.mac} meta pkttype set host`));
  assert.ok(tapWireCommands(state).some((c) => c.join(' ') === `address replace 169.254.67.67/32 dev ${state.bridge.name} scope link`));
});

test('a failed wire undoes itself and reports the original error', async () => {
  const { ip, nft, binding } = setup();
  const state = planTap(ctx, snapshot);
  let applyCount = 0;
  ip.onApply = () => {
    if (applyCount++ === 0) throw new InternalError('Command failed -:7');
  };
  // What the netns holds after the batch stopped: the bridge exists, the TAP does not.
  const linksAfterFailure = [
    ...(docs[3] as unknown[]),
    { ifname: state.bridge.name, mtu: 1500, flags: [], group: String(state.linkGroup), linkinfo: { info_kind: 'bridge' } },
  ];
  ip.onShow = () => [linksAfterFailure];
  await assert.rejects(binding.wire(ctx, state), /Command failed -:7/);
  const applies = ip.calls.filter((c) => c.op === 'apply');
  assert.equal(applies.length, 2);
  assert.deepEqual(applies[1]!.commands, tapUnwireCommands(state, parseLinks(linksAfterFailure)));
  assert.deepEqual(applies[1]!.commands[0], ['link', 'delete', 'group', String(state.linkGroup)]);
  assert.equal(nft.scripts.at(-1)!.script, isolationRemovalScript({ uplink: 'eth0', bridge: state.bridge.name }));
});

test('unwire succeeds when the netns is gone', async () => {
  const { ip, nft, binding } = setup();
  ip.onShow = () => {
    throw new NotFoundError('Cannot open network namespace "vmlet-pod1": No such file or directory');
  };
  await binding.unwire(ctx, planTap(ctx, snapshot));
  assert.equal(ip.calls.filter((c) => c.op === 'apply').length, 0);
  assert.equal(nft.scripts.length, 1, 'the isolation removal runs beside the link read (a gone netns is fine for it)');
});

test('unwire refuses to take the veth from a bridge it does not own', async () => {
  const state = planTap(ctx, snapshot);
  assert.throws(
    () => tapUnwireCommands(state, [link('eth0', { master: 'cni0' })]),
    FailedPreconditionError,
  );
});

test('unwire of a netns that leaves the sandbox: one blind ip batch, no nft, bridge and TAP left for the netns (golden)', async () => {
  const { ip, nft, binding } = setup();
  const state = planTap(ctx, snapshot);
  await binding.unwire(ctx, state, { netnsLeaving: true });
  assert.deepEqual(ip.calls.map((c) => c.op), ['apply'], 'no link read before the batch');
  assert.deepEqual(ip.calls[0]!.commands, tapReleaseCommands(state));
  assert.equal(nft.scripts.length, 0, 'the isolation table goes with the netns');
  assert.ok(!ip.calls[0]!.commands.some((c) => c.includes('delete')), 'nothing of ours is deleted');
  const wired = [...snapshot.links.map((l) => (l.name === 'eth0' ? { ...l, master: state.bridge.name } : l)), link(state.bridge.name, { group: state.linkGroup, kind: 'bridge' })];
  assertGolden(
    'network/tap-release-batches.txt',
    '# release, blind\n' +
      formatBatch(tapReleaseCommands(state)) +
      '# release, links read: veth on our bridge\n' +
      formatBatch(tapUnwireCommands(state, wired, { netnsLeaving: true })) +
      '# release, links read: veth off any bridge\n' +
      formatBatch(tapUnwireCommands(state, snapshot.links, { netnsLeaving: true })) +
      '# release, links read: veth gone\n' +
      formatBatch(tapUnwireCommands(state, [link('lo')], { netnsLeaving: true })),
  );
  assert.throws(() => tapUnwireCommands(state, [link('eth0', { master: 'cni0' })], { netnsLeaving: true }), FailedPreconditionError);
});

test('a blind release that fails reads the links and fits the batch to them; a gone netns is fine', async () => {
  const state = planTap(ctx, snapshot);
  const { ip, nft, binding } = setup();
  let applies = 0;
  ip.onApply = () => {
    if (applies++ === 0) throw new NotFoundError('Cannot find device "eth0"');
  };
  ip.onShow = () => [[{ ifname: 'lo', mtu: 65536, group: 'default', flags: ['UP'] }]];
  await binding.unwire(ctx, state, { netnsLeaving: true });
  assert.deepEqual(ip.calls.map((c) => c.op), ['apply', 'show'], 'veth gone: nothing to apply after the read');
  assert.equal(nft.scripts.length, 0);

  const gone = setup();
  gone.ip.onApply = () => {
    throw new NotFoundError('Cannot open network namespace "vmlet-pod1"');
  };
  gone.ip.onShow = () => {
    throw new NotFoundError('Cannot open network namespace "vmlet-pod1"');
  };
  await gone.binding.unwire(ctx, state, { netnsLeaving: true });
  assert.deepEqual(gone.ip.calls.map((c) => c.op), ['apply', 'show']);
});

test('a Calico or IPv6 state takes the whole unwiring even when the netns leaves (netns-wide settings go back)', async () => {
  const { ip, nft, binding } = setup();
  ip.onShow = () => [[]];
  const state = { ...planTap(ctx, snapshot), ipv6: undefined, calico: { podAddress: '198.18.5.7', podGateway: '169.254.1.1', fakeGateway: '198.18.5.254', prefixLength: 24, sysctlsBefore: {} } };
  await assert.rejects(binding.unwire(ctx, state, { netnsLeaving: true }), /Calico/);
  assert.equal(ip.calls[0]!.op, 'show', 'the full unwiring reads the links first');
  assert.equal(nft.scripts.length, 1, 'and removes the isolation table');
});

test('a warm netns is prewired (bridge and TAP down, isolation rules), and wiring it only joins them up (golden)', async () => {
  const names = prewiredNames('vmlet-warm-00112233aabbccdd');
  assert.deepEqual(prewiredNames('vmlet-warm-00112233aabbccdd'), names, 'derived from the netns name alone');
  assert.notDeepEqual(prewiredNames('vmlet-warm-00112233aabbccde'), names);
  assert.ok(names.bridge.length <= 15 && names.tap.length <= 15);

  const { ip, nft, binding } = setup();
  await binding.prewire('vmlet-warm-00112233aabbccdd', names, 'eth0');
  assert.deepEqual(ip.calls.map((c) => c.op), ['apply']);
  assert.deepEqual(nft.scripts, [{ netns: 'vmlet-warm-00112233aabbccdd', script: isolationScript({ uplink: 'eth0', bridge: names.bridge }) }]);

  // The sandbox's plan takes the prewired devices (present in its snapshot) instead of refusing them.
  const warmCtx: BindingContext = { ...ctx, netnsName: 'vmlet-warm-00112233aabbccdd', netnsPath: '/run/netns/vmlet-warm-00112233aabbccdd', prewired: names };
  const withDevices = { ...snapshot, links: [...snapshot.links, link(names.bridge, { kind: 'bridge', group: linkGroupFor(0), up: false }), link(names.tap, { kind: 'tun', up: false })] };
  assert.throws(() => planTap(ctx, { ...snapshot, links: [...snapshot.links, link(planTap(ctx, snapshot).bridge.name, { kind: 'bridge' })] }), FailedPreconditionError);
  const state = planTap(warmCtx, withDevices); // the binding's own options, as prewire used
  assert.equal(state.prewired, true);
  assert.equal(state.vm.binding.kind === 'tap' && state.vm.binding.tap, names.tap);
  assertGolden('network/tap-prewired-batches.txt', '# prewire\n' + formatBatch(ip.calls[0]!.commands!) + '# wire\n' + formatBatch(tapWireCommands(state)));

  // Wiring installs the table again, now with the bridge's MAC for the redirect to the DHCP server address.
  ip.calls.length = 0;
  nft.scripts.length = 0;
  await binding.wire(warmCtx, state);
  assert.deepEqual(ip.calls.map((c) => c.op), ['apply']);
  assert.deepEqual(nft.scripts, [{ netns: 'vmlet-warm-00112233aabbccdd', script: isolationScript({ uplink: 'eth0', bridge: names.bridge, bridgeMac: state.bridge.mac, tap: names.tap }) }]);
});
