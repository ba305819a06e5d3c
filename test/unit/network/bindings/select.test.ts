import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BindingSelector, classifyLink } from '../../../../src/network/bindings/select.js';
import { TapBinding } from '../../../../src/network/bindings/tap.js';
import type { SriovWiredInterface, TapWiredInterface } from '../../../../src/network/bindings/types.js';
import { SriovBinding } from '../../../../src/network/bindings/sriov.js';
import { NodeSysfs } from '../../../../src/network/bindings/sysfs.js';
import { DhcpIsolation } from '../../../../src/network/isolation.js';
import type { LinkState } from '../../../../src/network/bindings/snapshot.js';
import { FailedPreconditionError, InternalError } from '../../../../src/errors.js';
import { FakeIpRunner, FakeNftRunner } from '../fakes.js';

const VF = '0000:3b:02.1';
const PF = '0000:3b:00.0';

/** A fake sysfs with one PF and one of its VFs, shaped like the kernel's PCI device tree. */
function fakeSysfs(t: { after: (fn: () => void) => void }): string {
  const root = mkdtempSync(join(tmpdir(), 'vmlet-sysfs-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const devices = join(root, 'bus', 'pci', 'devices');
  mkdirSync(join(devices, PF), { recursive: true });
  mkdirSync(join(devices, VF), { recursive: true });
  symlinkSync(`../${PF}`, join(devices, VF, 'physfn'));
  symlinkSync(`../${VF}`, join(devices, PF, 'virtfn0'));
  return root;
}

function link(extra: Partial<LinkState>): LinkState {
  return { name: 'net1', mtu: 1500, up: true, group: 0, ...extra };
}

test('a veth gets the tap binding', async (t) => {
  const root = fakeSysfs(t);
  assert.deepEqual(await classifyLink(link({ kind: 'veth' }), root), { kind: 'tap' });
});

test('a PCI function with a physfn link is an SR-IOV VF', async (t) => {
  const root = fakeSysfs(t);
  assert.deepEqual(await classifyLink(link({ parentBus: 'pci', parentDev: VF }), root), { kind: 'sriov', pciAddress: VF });
});

test('a PF, a virtio NIC or a macvlan has no binding yet', async (t) => {
  const root = fakeSysfs(t);
  for (const l of [
    link({ parentBus: 'pci', parentDev: PF }),
    link({ parentBus: 'virtio', parentDev: 'virtio2' }),
    link({ kind: 'macvlan' }),
  ]) {
    await assert.rejects(classifyLink(l, root), FailedPreconditionError);
  }
});

test('a parent device that is not a PCI address is never used as a path', async (t) => {
  const root = fakeSysfs(t);
  await assert.rejects(classifyLink(link({ parentBus: 'pci', parentDev: `../../${VF}` }), root), InternalError);
});

test('the selector hands out the tap binding, refuses VFs unless --sriov is on, and finds the owner of a state', async (t) => {
  const root = fakeSysfs(t);
  const tap = new TapBinding({ ip: new FakeIpRunner(), isolation: new DhcpIsolation(new FakeNftRunner()) });
  const sriov = new SriovBinding({ ip: new FakeIpRunner(), sysfs: new NodeSysfs(root) });
  const off = new BindingSelector({ bindings: { tap, sriov }, sysfs: new NodeSysfs(root) });
  assert.equal(await off.select(link({ kind: 'veth' })), tap);
  await assert.rejects(off.select(link({ parentBus: 'pci', parentDev: VF })), (err: unknown) => {
    return err instanceof FailedPreconditionError && err.message.includes(VF) && err.message.includes('--sriov on');
  });
  const on = new BindingSelector({ bindings: { tap, sriov }, sysfs: new NodeSysfs(root), sriovEnabled: true });
  assert.equal(await on.select(link({ parentBus: 'pci', parentDev: VF })), sriov);
  assert.equal(off.forState({ kind: 'tap' } as TapWiredInterface), tap);
  // A VF state is undone whatever the setting.
  assert.equal(off.forState({ kind: 'sriov' } as SriovWiredInterface), sriov);
  assert.throws(() => off.forState({ kind: 'masquerade' } as unknown as TapWiredInterface), InternalError);
});

test('without a parent device, class/net/IF/device names the VF, but only for the link of that ifindex', async (t) => {
  const root = fakeSysfs(t);
  mkdirSync(join(root, 'class', 'net', 'net1'), { recursive: true });
  symlinkSync(`../../../bus/pci/devices/${VF}`, join(root, 'class', 'net', 'net1', 'device'));
  writeFileSync(join(root, 'class', 'net', 'net1', 'ifindex'), '7\n');
  assert.deepEqual(await classifyLink(link({ kind: 'tun', ifindex: 7 }), root), { kind: 'sriov', pciAddress: VF });
  // Same name, other index: a host interface of that name, not this one.
  await assert.rejects(classifyLink(link({ kind: 'tun', ifindex: 8 }), root), FailedPreconditionError);
});
