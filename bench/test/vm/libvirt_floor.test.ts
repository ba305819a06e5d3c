import { test } from 'node:test';
import assert from 'node:assert/strict';
import { floorDomainXml, FLOOR_DOMAIN_PREFIX } from '../../vm/libvirt_floor.js';

// Inline rather than a golden file: test/golden/ belongs to the product's tests.
const EXPECTED = `<domain type='qemu'>
  <name>vmletbench-floor-abc123-1</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/tmp/b/d.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <serial type='file'><source path='/tmp/b/d.console'/><target port='0'/></serial>
  </devices>
</domain>
`;

test('the floor domain XML is fixed text around the given name, paths and memory', () => {
  assert.equal(floorDomainXml(`${FLOOR_DOMAIN_PREFIX}abc123-1`, '/tmp/b/d.qcow2', '/tmp/b/d.console', 256), EXPECTED);
});

test('floorDomainXml refuses names and paths that could change the XML', () => {
  assert.throws(() => floorDomainXml("x'/><evil", '/tmp/a.qcow2', '/tmp/a.console', 256), RangeError);
  assert.throws(() => floorDomainXml('ok', "/tmp/a'.qcow2", '/tmp/a.console', 256), RangeError);
  assert.throws(() => floorDomainXml('ok', '/tmp/../etc/a.qcow2', '/tmp/a.console', 256), RangeError);
  assert.throws(() => floorDomainXml('ok', 'relative.qcow2', '/tmp/a.console', 256), RangeError);
  assert.throws(() => floorDomainXml('ok', '/tmp/a.qcow2', '/tmp/a.console', 1.5), RangeError);
});
