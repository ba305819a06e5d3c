/**
 * Data disks of a warm VM (#22): the pure QMP commands (golden), and the container flow over fakes
 * that plugs each block device through vmlet's QMP socket with an fd vmlet opened (add-fd, then a
 * node on /dev/fdset/N, then remove-fd), never through libvirt; every opened device is closed, and
 * a failed plug discards the warm VM and gives the devices back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { containerHarness, containerSpec, until } from '../../../helpers/container_harness.js';
import { Gate } from '../../../helpers/fake_container_deps.js';
import { assertGolden } from '../../../helpers/golden.js';
import { addFdCommand, removeFdCommand, warmDataDiskCommands } from '../../../../src/container/warm/hotplug_commands.js';
import { DeviceGrants, type NodeOps } from '../../../../src/container/block_devices/grants.js';
import type { DeviceInspector } from '../../../../src/container/block_devices/plan.js';
import type { RootDeviceIo } from '../../../../src/container/block_devices/persistent_root.js';
import { BLOCK_GRANTS_DIR, VM_DIR } from '../../../../src/container/layout.js';
import { silentLogger } from '../../../../src/log.js';

const RW_DEV = '/dev/fakedata';
const RO_DEV = '/dev/fakero';
const BLOB = `/var/lib/vmlet/images/blobs/${'ab'.repeat(32)}`;

test('data disk commands: a block device through its fd set (raw, direct, native AIO), an image volume by path, read-only kept; bad input refused', () => {
  const commands = {
    addFd: addFdCommand(0),
    readWrite: warmDataDiskCommands({ path: '/dev/loop3', serial: 'testpvc', readOnly: false }, 0, 2, 4),
    readOnly: warmDataDiskCommands({ path: '/dev/loop4', serial: 'rodisk', readOnly: true }, 1, 3, 5),
    imageVolume: warmDataDiskCommands({ path: BLOB, serial: 'image', readOnly: true, imageFormat: 'qcow2' }, 2, 4, undefined),
    removeFd: removeFdCommand(4),
  };
  assertGolden('container/warm-data-disk-hotplug.json', JSON.stringify(commands, null, 2) + '\n');
  const disk = { path: '/dev/loop3', serial: 'testpvc', readOnly: false };
  assert.throws(() => warmDataDiskCommands(disk, 0, 2, undefined), /needs the fd set/);
  assert.throws(() => warmDataDiskCommands({ ...disk, path: '/srv/loop3' }, 0, 2, 1), /not under \/dev/);
  assert.throws(() => warmDataDiskCommands({ ...disk, path: '/dev/../etc/shadow' }, 0, 2, 1), /absolute normalized/);
  assert.throws(() => warmDataDiskCommands({ ...disk, serial: 'a b' }, 0, 2, 1), /serial/);
  assert.throws(() => warmDataDiskCommands(disk, 8, 2, 1), /index 8/);
  assert.throws(() => warmDataDiskCommands({ path: BLOB, serial: 'image', readOnly: false, imageFormat: 'qcow2' }, 0, 2, undefined), /read-only/);
  assert.throws(() => removeFdCommand(-1), /fd set id/);
});

/** Two fake block devices; opens and closes logged. */
function fakeBlockHost(failOpen = false) {
  const calls: string[] = [];
  const inspector: DeviceInspector = { lstat: async (p) => ([RW_DEV, RO_DEV].includes(p) ? 'block' : undefined), realpath: async (p) => p };
  const nodes: NodeOps = {
    stat: async (p) => ({ uid: 0, gid: 6, mode: 0o60660, rdev: p === RW_DEV ? 0x701 : 0x702 }),
    chown: async (p) => void calls.push(`chown ${p}`),
    chmod: async () => {},
  };
  const rootIo = {} as RootDeviceIo;
  let fd = 40;
  const openDevice = async (path: string, readOnly: boolean) => {
    if (failOpen) throw new Error(`EACCES: ${path} (fake)`);
    const mine = fd++;
    calls.push(`open ${path} ${readOnly ? 'ro' : 'rw'} fd ${mine}`);
    return { fd: mine, close: async () => void calls.push(`close fd ${mine}`) };
  };
  return { calls, host: (root: string) => ({ inspector, grants: new DeviceGrants(join(root, BLOCK_GRANTS_DIR), silentLogger, nodes), rootIo, openDevice }) };
}

const devices = [
  { container_path: '/dev/testpvc', host_path: RW_DEV, permissions: 'mrw' },
  { container_path: '/dev/rodisk', host_path: RO_DEV, permissions: 'r' },
];

async function createWarm(h: Awaited<ReturnType<typeof containerHarness>>) {
  assert.ok(h.service.claimWarmNetns(containerSpec().sandboxId));
  h.sandboxes.planGate = new Gate();
  const creating = h.service.create(containerSpec({ devices }));
  creating.catch(() => {});
  await until('the root disk plugged', () => h.log.includes('qmp device_add'));
  h.sandboxes.planGate.open();
  return h.clock.run(creating);
}

test('a warm VM gets its block devices through QMP with fds vmlet opened, on the root ports after the NIC; libvirt attaches nothing', async (t) => {
  const dev = fakeBlockHost();
  const h = await containerHarness(t, { warm: true, blockDevices: dev.host });
  const id = await createWarm(h);
  assert.equal(h.service.get(id)!.warm, true);
  const qmp = h.log.text().split('\n').filter((l) => / qmp (add-fd|remove-fd|blockdev-add|device_add) /.test(l) && /vmletdata|fdset|add-fd/.test(l)).map((l) => l.replace(/^.*? qmp /, 'qmp '));
  assert.deepEqual(qmp, [
    'qmp add-fd {"opaque":"vmlet-data0"} with fd 40',
    'qmp blockdev-add {"driver":"raw","node-name":"vmletdata0","read-only":false,"cache":{"direct":true,"no-flush":false},"file":{"driver":"host_device","filename":"/dev/fdset/0","aio":"native","read-only":false,"cache":{"direct":true,"no-flush":false}}}',
    'qmp device_add {"driver":"virtio-blk-pci","id":"vmletdata0","drive":"vmletdata0","serial":"testpvc","bus":"ua-vmletport2"}',
    'qmp remove-fd {"fdset-id":0}',
    'qmp add-fd {"opaque":"vmlet-data1"} with fd 41',
    'qmp blockdev-add {"driver":"raw","node-name":"vmletdata1","read-only":true,"cache":{"direct":true,"no-flush":false},"file":{"driver":"host_device","filename":"/dev/fdset/1","aio":"native","read-only":true,"cache":{"direct":true,"no-flush":false}}}',
    'qmp device_add {"driver":"virtio-blk-pci","id":"vmletdata1","drive":"vmletdata1","serial":"rodisk","bus":"ua-vmletport3"}',
    'qmp remove-fd {"fdset-id":1}',
  ]);
  assert.deepEqual(dev.calls.filter((c) => /^(open|close)/.test(c)), [`open ${RW_DEV} rw fd 40`, 'close fd 40', `open ${RO_DEV} ro fd 41`, 'close fd 41']);
  assert.ok(!h.log.includes('attachDeviceFlags'), 'libvirt attached nothing');
  // Still granted to QEMU's user: the grant marks the devices taken (and a cold fallback needs it).
  assert.deepEqual(readdirSync(join(h.root, BLOCK_GRANTS_DIR)), [`${id}.json`]);
  await h.clock.run(h.service.remove(id));
  assert.deepEqual(readdirSync(join(h.root, BLOCK_GRANTS_DIR)), []);
  assert.equal(h.ops.domains.size, 0);
});

for (const [name, failCommand, failOpen] of [
  ['add-fd fails', 'add-fd', false],
  ['blockdev-add fails', 'blockdev-add', false],
  ['the device cannot be opened', undefined, true],
] as const) {
  test(`a warm create whose data disk plug fails (${name}) rolls back: warm VM discarded, fds closed, devices given back`, async (t) => {
    const dev = fakeBlockHost(failOpen);
    const h = await containerHarness(t, { warm: true, blockDevices: dev.host });
    if (failCommand) h.qmp.failCommand = failCommand;
    h.qmp.failArgs = /vmletdata1|vmlet-data1/; // the second data disk: the first is plugged by then
    await assert.rejects(createWarm(h), failOpen ? /EACCES/ : new RegExp(`${failCommand} failed`));
    assert.equal(h.ops.domains.size, 0, 'the warm domain is destroyed and undefined');
    const opened = dev.calls.filter((c) => c.startsWith('open')).length;
    assert.equal(dev.calls.filter((c) => c.startsWith('close')).length, opened, 'every opened device closed');
    assert.deepEqual(readdirSync(join(h.root, BLOCK_GRANTS_DIR)), []);
    assert.deepEqual(readdirSync(join(h.root, VM_DIR)), []);
    assert.equal(h.qmp.open.size, 0);
    assert.deepEqual(h.service.list(), []);
    if (!failOpen) assert.ok(h.log.includes('qmp remove-fd {"fdset-id":0}'), 'the plugged disk\'s fd set was released');
  });
}
