import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertGolden } from '../../helpers/golden.js';
import { InvalidArgumentError } from '../../../src/errors.js';
import { buildDomainXml, dataDiskTarget } from '../../../src/libvirt/domain_xml.js';
import type { DataDisk, VmSpec } from '../../../src/libvirt/domain_spec.js';

function specWithDisks(dataDisks: DataDisk[]): VmSpec {
  return {
    name: 'vmlet-blk0',
    uuid: '6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f',
    domainType: 'qemu',
    emulator: '/usr/lib/vmlet/vmwrapper',
    memoryBytes: 512 * 1024 * 1024,
    vcpus: 1,
    rootDisk: { path: '/var/lib/vmlet/vms/blk0/root.qcow2', format: 'qcow2', driver: 'virtio' },
    seed: { path: '/var/lib/vmlet/vms/blk0/seed.iso', kind: 'nocloud' },
    console: { kind: 'file', path: '/var/lib/vmlet/vms/blk0/console.raw' },
    nics: [],
    dataDisks,
    emulatorEnv: [],
    filesLabelledByVmlet: true,
    metadata: { sandboxId: 'sb-blk0', containerId: 'ct-blk0' },
  };
}

const disks: DataDisk[] = [
  { path: '/dev/loop3', serial: 'testpvc', readOnly: false },
  { path: '/dev/loop4', serial: 'a-very-long-5d019c09', readOnly: true },
];

test('domain XML: block devices as raw virtio disks, no host cache, native AIO, serial, read-only when asked', () => {
  const xml = buildDomainXml(specWithDisks(disks));
  assertGolden('libvirt/domain-data-disks.xml', xml);
  assert.match(xml, /<disk type="block" device="disk">\s*<driver name="qemu" type="raw" cache="none" io="native"\/>\s*<source dev="\/dev\/loop3"\/>\s*<target dev="vdb" bus="virtio"\/>\s*<serial>testpvc<\/serial>\s*<\/disk>/);
  assert.match(xml, /<source dev="\/dev\/loop4"\/>\s*<target dev="vdc" bus="virtio"\/>\s*<serial>a-very-long-5d019c09<\/serial>\s*<readonly\/>/);
  assert.doesNotMatch(buildDomainXml(specWithDisks([])), /type="block"/);
});

test('data disk targets: vdb on (vda is the root disk\'s)', () => {
  assert.equal(dataDiskTarget(0), 'vdb');
  assert.equal(dataDiskTarget(7), 'vdi');
});

test('data disks: unsafe values are refused with InvalidArgumentError', () => {
  const bad: [DataDisk[], RegExp][] = [
    [[{ path: '/tmp/loop3', serial: 'a', readOnly: false }], /not under \/dev/],
    [[{ path: '/dev/../etc/x', serial: 'a', readOnly: false }], /data disk path/],
    [[{ path: '/dev/loop3', serial: 'a<b>', readOnly: false }], /serial/],
    [[{ path: '/dev/loop3', serial: 'x'.repeat(21), readOnly: false }], /serial/],
    [[{ path: '/dev/loop3', serial: 'a', readOnly: false }, { path: '/dev/loop4', serial: 'a', readOnly: false }], /serial/],
    [[{ path: '/dev/loop3', serial: 'a', readOnly: false }, { path: '/dev/loop3', serial: 'b', readOnly: false }], /duplicate/],
    [Array.from({ length: 9 }, (_, i) => ({ path: `/dev/loop${i}`, serial: `s${i}`, readOnly: false })), /number of data disks/],
  ];
  for (const [d, message] of bad) assert.throws(() => buildDomainXml(specWithDisks(d)), (err: unknown) => err instanceof InvalidArgumentError && message.test(err.message));
});

const imageDisks: DataDisk[] = [
  { path: '/dev/loop3', serial: 'testpvc', readOnly: false },
  { path: '/var/lib/vmlet/images/blobs/' + 'a'.repeat(64), serial: 'disk', readOnly: true, imageFormat: 'qcow2' },
  { path: '/var/lib/vmlet/images/blobs/' + 'b'.repeat(64), serial: 'raw-disk', readOnly: true, imageFormat: 'raw' },
];

test('domain XML: image volumes as read-only file disks of the blob in its own format, after the block devices', () => {
  const xml = buildDomainXml(specWithDisks(imageDisks));
  assertGolden('libvirt/domain-image-volumes.xml', xml);
  assert.match(xml, /<disk type="file" device="disk">\s*<driver name="qemu" type="qcow2"\/>\s*<source file="\/var\/lib\/vmlet\/images\/blobs\/a{64}"\/>\s*<target dev="vdc" bus="virtio"\/>\s*<serial>disk<\/serial>\s*<readonly\/>\s*<\/disk>/);
  assert.match(xml, /<driver name="qemu" type="raw"\/>\s*<source file="\/var\/lib\/vmlet\/images\/blobs\/b{64}"\/>\s*<target dev="vdd" bus="virtio"\/>\s*<serial>raw-disk<\/serial>\s*<readonly\/>/);
});

test('image volumes: a writable one, an unknown format or a /dev path are refused', () => {
  const blob = '/var/lib/vmlet/images/blobs/' + 'a'.repeat(64);
  const bad: [DataDisk[], RegExp][] = [
    [[{ path: blob, serial: 'a', readOnly: false, imageFormat: 'qcow2' }], /read-only/],
    [[{ path: blob, serial: 'a', readOnly: true, imageFormat: 'vmdk' as 'raw' }], /format/],
    [[{ path: '/dev/loop3', serial: 'a', readOnly: true, imageFormat: 'raw' }], /not a device/],
    [[{ path: 'relative/blob', serial: 'a', readOnly: true, imageFormat: 'raw' }], /data disk path/],
  ];
  for (const [d, message] of bad) assert.throws(() => buildDomainXml(specWithDisks(d)), (err: unknown) => err instanceof InvalidArgumentError && message.test(err.message));
});
