/**
 * The sriov binding against a real pod netns and the real `ip`, with a fake sysfs tree (temp dir)
 * and a fake PF (test/fixtures/sriov/ip answers the PF's lines, everything else is the real ip).
 * A TAP stands in for the VF's netdev (this kernel has no dummy driver). The fake kernel
 * (test/helpers/fake_sriov_kernel.ts) acts on each bind/unbind: the netdev goes away with its
 * driver and comes back in the host namespace under another name, and unwire must bring it back
 * into the pod netns exactly.
 * Needs root. Addresses in 198.18.220.0/24.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ExecIpRunner } from '../../../src/network/iproute.js';
import { BindingSelector } from '../../../src/network/bindings/select.js';
import { SriovBinding } from '../../../src/network/bindings/sriov.js';
import { readInterfaceSnapshot } from '../../../src/network/bindings/snapshot.js';
import { NodeSysfs } from '../../../src/network/bindings/sysfs.js';
import { TapBinding } from '../../../src/network/bindings/tap.js';
import type { BindingContext, SriovWiredInterface } from '../../../src/network/bindings/types.js';
import { DhcpIsolation, ExecNftRunner } from '../../../src/network/isolation.js';
import { addFakeVf, startFakeSriovKernel } from '../../helpers/fake_sriov_kernel.js';

const run = promisify(execFile);
const shim = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures', 'sriov', 'ip');
const VF = '0000:5e:02.3';
const PF = '0000:5e:00.0';

async function ipJson(netns: string | undefined, ...args: string[]): Promise<any[]> {
  const { stdout } = await run('ip', [...(netns ? ['-n', netns] : []), '-j', ...args]);
  return JSON.parse(stdout);
}

test('a VF (fake sysfs, fake PF, real netns) is wired and comes back from the host namespace exactly as CNI left it', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, async (t) => {
  const tag = randomBytes(3).toString('hex');
  const netns = `vmlet-sr${tag}`;
  const pfName = `vpf${tag}`;
  const root = mkdtempSync(join(tmpdir(), 'vmlet-sriov-int-'));
  t.after(async () => {
    await run('ip', ['netns', 'delete', netns]).catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  });
  await run('ip', ['netns', 'add', netns]);
  // The "VF netdev" as the SR-IOV CNI plugin leaves it: named net1, pod MAC, MTU, address, route.
  const sh = (cmd: string) => run('ip', ['-n', netns, ...cmd.split(' ')]);
  await sh('tuntap add dev net1 mode tap');
  await sh('link set dev net1 address 02:5e:02:03:00:01 mtu 9000 up');
  await sh('address add 198.18.220.20/24 dev net1');
  await sh('route add 198.18.221.0/24 via 198.18.220.254 dev net1');
  const before = await readInterfaceSnapshot(new ExecIpRunner(), netns, 'net1');

  // The fake sysfs: PF with the VF as virtfn3, driver iavf, its own IOMMU group, vfio-pci loaded;
  // the fake kernel moves the driver link and the netdev as bind/unbind are written.
  const kernel = startFakeSriovKernel(root, { address: PF, name: pfName }, tag);
  t.after(async () => {
    kernel.close();
    for (const name of kernel.hostNetdevs) await run('ip', ['link', 'delete', name]).catch(() => undefined);
  });
  const dev = (a: string, ...rest: string[]) => join(root, 'bus', 'pci', 'devices', a, ...rest);
  addFakeVf(root, { address: VF, pf: PF, index: 3, group: 77, netns: `/run/netns/${netns}`, ifname: 'net1', ifindex: before.link.ifindex! });
  const pfState = join(root, 'pf.json');
  const pfLog = join(root, 'pf.log');
  writeFileSync(pfState, JSON.stringify([{ ifname: pfName, vfinfo_list: [{ vf: 3, address: '02:5e:02:03:00:01', vlan_list: [{ vlan: 170, qos: 0 }], spoofchk: true, trust: false }] }]));
  process.env.VMLET_TEST_FAKE_PF = pfName;
  process.env.VMLET_TEST_PF_STATE = pfState;
  process.env.VMLET_TEST_PF_LOG = pfLog;

  const ip = new ExecIpRunner({ ipPath: shim });
  const sysfs = new NodeSysfs(root);
  const sriov = new SriovBinding({ ip, sysfs, netdevWaitMs: 3000 });
  const selector = new BindingSelector({ bindings: { tap: new TapBinding({ ip, isolation: new DhcpIsolation(new ExecNftRunner()) }), sriov }, sysfs, sriovEnabled: true });
  assert.equal(await selector.select(before.link), sriov);
  const ctx: BindingContext = { netnsName: netns, netnsPath: `/run/netns/${netns}`, sandboxId: `sr${tag}`, index: 1, cniInterface: { name: 'net1', ips: [], routes: [] } };
  const state = (await sriov.wire(ctx, await sriov.plan(ctx, before))) as SriovWiredInterface;
  assert.deepEqual(state.vm.binding, { kind: 'sriov', pciAddress: VF });
  assert.equal(readFileSync(dev(VF, 'driver_override'), 'utf8'), 'vfio-pci\n');
  assert.deepEqual(kernel.events, [`iavf/unbind ${VF}`, `vfio-pci/bind ${VF}`]);
  assert.equal(readlinkSync(dev(VF, 'driver')).split('/').pop(), 'vfio-pci');
  assert.equal(readFileSync(pfLog, 'utf8'), `link set dev ${pfName} vf 3 mac 02:5e:02:03:00:01 vlan 170 qos 0 spoofchk on trust off\n`);
  assert.deepEqual(await ipJson(netns, 'link', 'show', 'dev', 'net1').catch(() => []), [], 'the netdev left the pod netns with its driver');

  await sriov.unwire(ctx, state);
  assert.deepEqual(kernel.events, [`iavf/unbind ${VF}`, `vfio-pci/bind ${VF}`, `vfio-pci/unbind ${VF}`, `iavf/bind ${VF}`]);
  assert.equal(readlinkSync(dev(VF, 'driver')).split('/').pop(), 'iavf');
  assert.equal(readFileSync(dev(VF, 'driver_override'), 'utf8'), '\n');
  assert.match(readFileSync(pfLog, 'utf8'), new RegExp(`vf 3 mac 02:5e:02:03:00:01 vlan 170 qos 0 spoofchk on trust off\n$`));
  assert.equal(kernel.hostNetdevs.length, 1);
  assert.deepEqual(await ipJson(undefined, 'link', 'show', 'dev', kernel.hostNetdevs[0]!).catch(() => []), [], 'the netdev left the host namespace');
  const after = await readInterfaceSnapshot(new ExecIpRunner(), netns, 'net1');
  assert.deepEqual(
    { mac: after.link.mac, mtu: after.link.mtu, up: after.link.up, addresses: after.addresses, routes: after.routes },
    { mac: before.link.mac, mtu: before.link.mtu, up: before.link.up, addresses: before.addresses, routes: before.routes },
  );
  // Once more: nothing to do, nothing fails.
  await sriov.unwire(ctx, state);
  assert.equal(kernel.events.length, 4, 'the second unwire wrote no bind/unbind');
});
