import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertGolden } from '../../helpers/golden.js';
import { buildDomainXml } from '../../../src/libvirt/domain_xml.js';
import type { VmSpec } from '../../../src/libvirt/domain_spec.js';

function blockRootSpec(driver: 'virtio' | 'scsi'): VmSpec {
  return {
    name: 'vmlet-5e1f-77aa',
    uuid: '0c8d5a3e-1b2f-4c6d-8e9f-0a1b2c3d4e5f',
    domainType: 'qemu',
    emulator: '/usr/lib/vmlet/vmwrapper',
    memoryBytes: 256 * 1024 * 1024,
    vcpus: 1,
    rootDisk: { path: '/dev/loop3', format: 'raw', driver, slice: { offset: 1048576, size: 66060288 } },
    seed: { path: '/var/lib/vmlet/vms/77aa/seed.iso', kind: 'nocloud' },
    console: { kind: 'file', path: '/var/lib/vmlet/vms/77aa/console.raw' },
    nics: [],
    emulatorEnv: [],
    metadata: { sandboxId: 'sb-77aa', containerId: 'ct-77aa' },
  };
}

test('domain XML: a persistent root device is a raw block disk seen from after the header, cache none', () => {
  const xml = buildDomainXml(blockRootSpec('virtio'));
  assertGolden('libvirt/domain-block-root.xml', xml);
  assert.match(xml, /<disk type="block" device="disk">\s*<driver name="qemu" type="raw" cache="none" io="native"\/>\s*<source dev="\/dev\/loop3">\s*<slices>\s*<slice type="storage" offset="1048576" size="66060288"\/>\s*<\/slices>\s*<\/source>\s*<target dev="vda" bus="virtio"\/>/);
  assert.match(buildDomainXml(blockRootSpec('scsi')), /<source dev="\/dev\/loop3">[\s\S]*<target dev="sda" bus="scsi"\/>/);
});

test('domain XML: a block root outside /dev or with an unaligned slice is refused', () => {
  const outside = blockRootSpec('virtio');
  outside.rootDisk = { path: '/tmp/dev', format: 'raw', driver: 'virtio', slice: { offset: 1048576, size: 512 } };
  assert.throws(() => buildDomainXml(outside), /root block device/);
  const unaligned = blockRootSpec('virtio');
  unaligned.rootDisk = { path: '/dev/loop3', format: 'raw', driver: 'virtio', slice: { offset: 1000, size: 512 } };
  assert.throws(() => buildDomainXml(unaligned), /slice offset/);
  const empty = blockRootSpec('virtio');
  empty.rootDisk = { path: '/dev/loop3', format: 'raw', driver: 'virtio', slice: { offset: 1048576, size: 0 } };
  assert.throws(() => buildDomainXml(empty), /slice size/);
});
