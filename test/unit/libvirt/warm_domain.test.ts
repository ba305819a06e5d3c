/**
 * The warm domain (a paused VM made before any container) and the QMP commands that turn it into
 * one container's VM: golden XML, golden commands, and refusals.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildDomainXml } from '../../../src/libvirt/domain_xml.js';
import { warmNicCommands, warmPortsFor, warmQmpArgs, warmRootDiskCommands, warmSeedCommand } from '../../../src/container/warm/hotplug_commands.js';
import type { VmSpec } from '../../../src/libvirt/domain_spec.js';
import { assertGolden } from '../../helpers/golden.js';

function warmSpec(): VmSpec {
  return {
    name: 'vmlet-warm-0f3a9c2e71b4',
    uuid: '53008994-44c0-4017-ad44-9c49758083da',
    domainType: 'qemu',
    emulator: '/usr/local/lib/vmlet/vmwrapper',
    memoryBytes: 256 * 1024 * 1024,
    vcpus: 1,
    console: { kind: 'file', path: '/var/lib/vmlet/vms/0f3a9c2e71b4/console.raw' },
    nics: [],
    emulatorArgs: warmQmpArgs('/var/lib/vmlet/vms/0f3a9c2e71b4/qmp'),
    emulatorEnv: [{ name: 'VMLET_NETNS', value: '/run/netns/vmlet-warm-00112233aabbccdd' }],
    warm: { hotplugPorts: warmPortsFor(4) },
    metadata: { sandboxId: 'warm', containerId: '0f3a9c2e71b4', owner: 'a1b2c3d4e5f60718' },
  };
}

test('a warm domain has no root disk, an empty aliased CD-ROM tray and free aliased root ports after the RNG and SCSI ones', () => {
  assertGolden('libvirt/domain-warm.xml', buildDomainXml(warmSpec()));
});

test('only a warm domain may lack a root disk, and it gets no seed file', () => {
  const { warm: _warm, ...cold } = warmSpec();
  assert.throws(() => buildDomainXml(cold), /root disk/);
  assert.throws(() => buildDomainXml({ ...warmSpec(), seed: { path: '/x/seed.iso', kind: 'nocloud' } }), /root disk/);
  assert.throws(() => buildDomainXml({ ...warmSpec(), warm: { hotplugPorts: 0 } }), /warm hotplug ports/);
  assert.throws(() => buildDomainXml({ ...warmSpec(), warm: { hotplugPorts: 17 } }), /warm hotplug ports/);
});

test('hotplug commands: root disk per driver, seed into the tray, NIC i on port i + 1', () => {
  const commands = {
    virtio: warmRootDiskCommands('/var/lib/vmlet/vms/abc/root.qcow2', 'virtio'),
    scsi: warmRootDiskCommands('/var/lib/vmlet/vms/abc/root.qcow2', 'scsi'),
    seed: warmSeedCommand('/var/lib/vmlet/vms/abc/seed.iso'),
    nics: warmNicCommands(
      [
        { tap: 'vtap0', mac: '52:54:00:12:34:56', mtu: 1500 },
        { tap: 'vtap1', mac: '0a:58:c6:12:01:07', mtu: 9000 },
      ],
      warmPortsFor(4),
    ),
  };
  assertGolden('libvirt/warm-hotplug.json', JSON.stringify(commands, null, 2) + '\n');
});

test('hotplug commands refuse what QEMU must not be handed', () => {
  assert.throws(() => warmRootDiskCommands('relative/root.qcow2', 'virtio'), /absolute normalized/);
  assert.throws(() => warmRootDiskCommands('/x/../etc/shadow', 'virtio'), /absolute normalized/);
  assert.throws(() => warmRootDiskCommands('/x/root\n.qcow2', 'virtio'), /absolute normalized/);
  assert.throws(() => warmRootDiskCommands('/x/root.qcow2', 'ide' as 'virtio'), /disk driver/);
  assert.throws(() => warmSeedCommand('/x/./seed.iso'), /absolute normalized/);
  const nic = (i: number) => ({ tap: `vtap${i}`, mac: `52:54:00:00:00:0${i}`, mtu: 1500 });
  assert.throws(() => warmNicCommands([nic(1), nic(2)], 2), /need 3 free root ports; the warm domain has 2/);
  assert.throws(() => warmNicCommands([{ ...nic(1), tap: 'a,b' }], 5), /TAP name/);
  assert.throws(() => warmNicCommands([{ ...nic(1), mac: '01:00:5e:00:00:01' }], 5), /unicast MAC/);
  assert.equal(warmNicCommands([], 1).length, 0);
  assert.throws(() => warmQmpArgs('/x,server=off/qmp'), /comma/);
  assert.throws(() => warmQmpArgs(`/${'a'.repeat(120)}/qmp`), /longer than 107/);
  assert.throws(() => warmQmpArgs('qmp'), /absolute normalized/);
});
