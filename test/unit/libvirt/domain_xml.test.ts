import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertGolden } from '../../helpers/golden.js';
import { InvalidArgumentError } from '../../../src/errors.js';
import { buildDomainXml, parseDomainMetadata, VMLET_METADATA_NAMESPACE } from '../../../src/libvirt/domain_xml.js';
import { nicsFromNetwork, type VmSpec } from '../../../src/libvirt/domain_spec.js';
import { sriovNetwork, threeNicNetwork } from '../guest/fixtures.js';
import { tapNicQemuArgs } from '../../../src/vmwrapper/tap_nic_args.js';

function multiNicSpec(): VmSpec {
  return {
    name: 'vmlet-0f3a9c2e71b4',
    uuid: '53008994-44C0-4017-AD44-9C49758083DA',
    domainType: 'kvm',
    emulator: '/usr/lib/vmlet/vmwrapper',
    memoryBytes: 512 * 1024 * 1024,
    vcpus: 2,
    cputune: { shares: 1024, period: 100000, quota: 50000 },
    cpuMode: 'host-model',
    rootDisk: { path: '/var/lib/vmlet/containers/0f3a9c2e71b4/root.qcow2', format: 'qcow2', driver: 'virtio' },
    seed: { path: '/var/lib/vmlet/containers/0f3a9c2e71b4/seed.iso', kind: 'nocloud' },
    console: { kind: 'file', path: '/var/lib/vmlet/containers/0f3a9c2e71b4/console.log' },
    nics: nicsFromNetwork(threeNicNetwork()),
    emulatorEnv: [
      { name: 'VMLET_NETNS', value: '/var/run/netns/vmlet-a1b2c3' },
      { name: 'VMLET_CONTAINER_ID', value: '0f3a9c2e71b4' },
    ],
    metadata: { sandboxId: 'a1b2c3d4e5f6', containerId: '0f3a9c2e71b4' },
  };
}

function scsiConfigDriveSpec(): VmSpec {
  return {
    name: 'vmlet-77aa',
    uuid: '0c8d5a3e-1b2f-4c6d-8e9f-0a1b2c3d4e5f',
    domainType: 'qemu',
    emulator: '/usr/bin/qemu-system-x86_64',
    memoryBytes: 1024 * 1024 * 1024 + 1, // not a KiB multiple: rounds up
    vcpus: 1,
    rootDisk: { path: '/var/lib/vmlet/c/77aa/root.qcow2', format: 'qcow2', driver: 'scsi' },
    seed: { path: '/var/lib/vmlet/c/77aa/config-2.iso', kind: 'configdrive' },
    console: { kind: 'pty', logPath: '/var/log/vmlet/77aa-console.log' },
    nics: [{ kind: 'tap', ifName: 'eth0', mac: '0a:58:c6:12:00:02', mtu: 1450, tap: 'vmt-77aa-0' }],
    emulatorEnv: [],
    memballoon: 'virtio',
    metadata: { sandboxId: 'sb-77aa', containerId: 'ct-77aa' },
  };
}

test('domain XML: two TAP NICs, an SR-IOV VF, virtio disk, NoCloud seed, file console, qemu env', () => {
  const xml = buildDomainXml(multiNicSpec());
  assertGolden('libvirt/domain-multi-nic.xml', xml);
  // A virtio-blk root disk still gets the virtio-scsi controller: the seed CD-ROM is on it.
  assert.match(xml, /<target dev="vda" bus="virtio"\/>/);
  assert.match(xml, /<target dev="sdb" bus="scsi"\/>\s*<readonly\/>\s*<address type="drive" controller="0" bus="0" target="0" unit="1"\/>/);
  assert.match(xml, /<controller type="scsi" index="0" model="virtio-scsi"\/>/);
  assert.doesNotMatch(xml, /bus="sata"/);
});

test('domain XML: no seed and a virtio root disk need no SCSI controller', () => {
  const spec = multiNicSpec();
  delete spec.seed;
  const xml = buildDomainXml(spec);
  assert.doesNotMatch(xml, /device="cdrom"|type="scsi"/);
});

test('domain XML: console on a unix socket with its log file, guest agent channel (what vmlet builds)', () => {
  const spec = multiNicSpec();
  spec.console = { kind: 'unix', socketPath: '/var/lib/vmlet/qmp/0f3a9c2e71b4aa01.console', logPath: '/var/lib/vmlet/vms/0f3a/console.raw' };
  spec.guestAgentSocket = '/var/lib/vmlet/qmp/0f3a9c2e71b4aa01.agent';
  const xml = buildDomainXml(spec);
  assertGolden('libvirt/domain-console-agent.xml', xml);
  assert.match(xml, /<serial type="unix">\s*<source mode="bind" path="\/var\/lib\/vmlet\/qmp\/0f3a9c2e71b4aa01.console"\/>\s*<log file="\/var\/lib\/vmlet\/vms\/0f3a\/console.raw" append="on"\/>/);
  assert.match(xml, /<channel type="unix">\s*<source mode="bind" path="\/var\/lib\/vmlet\/qmp\/0f3a9c2e71b4aa01.agent"\/>\s*<target type="virtio" name="org.qemu.guest_agent.0"\/>/);
});

test('domain XML of a VF pod as the cold path builds it: the TAP NIC on the QEMU command line, each VF a hostdev vmlet binds itself', () => {
  const nics = nicsFromNetwork(sriovNetwork());
  const spec: VmSpec = {
    ...multiNicSpec(),
    // As buildVmSpec splits them: TAPs as QEMU arguments (opened inside the pod netns), VFs as devices.
    nics: nics.filter((n) => n.kind !== 'tap'),
    emulatorArgs: tapNicQemuArgs(nics.flatMap((n) => (n.kind === 'tap' ? [{ tap: n.tap, mac: n.mac, mtu: n.mtu }] : []))),
  };
  const xml = buildDomainXml(spec);
  assertGolden('libvirt/domain-sriov.xml', xml);
  const hostdevs = [...xml.matchAll(/<hostdev mode="subsystem" type="pci" managed="no">[\s\S]*?<address ([^/]*)\/>/g)].map((m) => m[1]);
  assert.deepEqual(hostdevs, [
    'domain="0x0000" bus="0x3b" slot="0x02" function="0x1"',
    'domain="0x0000" bus="0xaf" slot="0x0a" function="0x7"',
  ]);
  assert.match(xml, /virtio-net-pci,id=vmletnic0,netdev=vmletnet0,mac=0a:58:c6:12:aa:05/);
  assert.doesNotMatch(xml, /managed="yes"/);
});

test('domain XML: scsi root disk with virtio-scsi controller, config drive, pty console with log', () => {
  const xml = buildDomainXml(scsiConfigDriveSpec());
  assertGolden('libvirt/domain-scsi-configdrive.xml', xml);
  // The seed CD-ROM shares the root disk's virtio-scsi controller: root at LUN 0, seed at LUN 1.
  assert.match(xml, /<target dev="sda" bus="scsi"\/>\s*<address type="drive" controller="0" bus="0" target="0" unit="0"\/>/);
  assert.match(xml, /<target dev="sdb" bus="scsi"\/>\s*<readonly\/>\s*<address type="drive" controller="0" bus="0" target="0" unit="1"\/>/);
  assert.equal(xml.match(/<controller type="scsi"/g)?.length, 1);
  assert.doesNotMatch(xml, /bus="sata"/);
  assert.doesNotMatch(xml, /xmlns:qemu/);
});

test('domain XML: markup and entity-like text in paths and env values stay literal', () => {
  const spec = scsiConfigDriveSpec();
  spec.rootDisk!.driver = 'virtio';
  // "&#46;&#46;" must not turn into ".." for libvirt, nor "&lt;" into "<".
  spec.rootDisk!.path = `/var/lib/vmlet/c/<x>&"'/&#46;&#46;/&lt;root.qcow2`;
  spec.console = { kind: 'file', path: `/var/lib/vmlet/c/a&b/"console".log` };
  spec.emulatorEnv = [{ name: 'EVIL', value: `"/><qemu:arg value="-S"/><x y="'&amp;&#10;` }];
  delete spec.seed;
  const xml = buildDomainXml(spec);
  assertGolden('libvirt/domain-hostile-escaped.xml', xml);
  assert.doesNotMatch(xml, /<qemu:arg/);

  // Exact escaping; the round trip through libxml2 (libvirt's parser) is in
  // test/integration/vm/domain_xml_validate.test.ts.
  assert.ok(xml.includes(`file="/var/lib/vmlet/c/&lt;x&gt;&amp;&quot;'/&amp;#46;&amp;#46;/&amp;lt;root.qcow2"`));
  assert.ok(xml.includes(`value="&quot;/&gt;&lt;qemu:arg value=&quot;-S&quot;/&gt;&lt;x y=&quot;'&amp;amp;&amp;#10;"`));
});

test('domain XML: hostile or out-of-range values are refused with InvalidArgumentError naming the field', () => {
  const cases: Array<[string, (s: VmSpec) => void, RegExp]> = [
    ['markup in name', (s) => (s.name = `vm<name>&"'`), /domain name/],
    ['control char in name', (s) => (s.name = 'vm\u0007x'), /domain name/],
    ['newline in disk path', (s) => (s.rootDisk!.path = '/var/lib/x\n/root.qcow2'), /root disk path/],
    ['DEL in seed path', (s) => (s.seed = { path: '/var/lib/x\u007f.iso', kind: 'nocloud' }), /seed path/],
    ['relative path', (s) => (s.rootDisk!.path = 'root.qcow2'), /root disk path/],
    ['dot-dot path', (s) => (s.rootDisk!.path = '/var/lib/vmlet/../../etc/shadow'), /root disk path/],
    ['relative emulator', (s) => (s.emulator = 'qemu-system-x86_64'), /emulator/],
    ['console path with tab', (s) => (s.console = { kind: 'file', path: '/var/log/a\tb' }), /console path/],
    ['console socket over 107 bytes', (s) => (s.console = { kind: 'unix', socketPath: `/${'x'.repeat(107)}`, logPath: '/l' }), /console socket path \(over 107 bytes\)/],
    ['relative agent socket', (s) => (s.guestAgentSocket = 'agent.sock'), /guest agent socket path/],
    ['lone surrogate', (s) => (s.rootDisk!.path = '/var/lib/\ud800x'), /root disk path/],
    ['env value control char', (s) => (s.emulatorEnv = [{ name: 'A', value: 'x\u0001' }]), /emulator env A value/],
    ['env name with dash', (s) => (s.emulatorEnv = [{ name: 'A-B', value: 'x' }]), /emulator env name/],
    ['bad uuid', (s) => (s.uuid = 'not-a-uuid'), /uuid/],
    ['tiny memory', (s) => (s.memoryBytes = 4096), /memory/],
    ['fractional memory', (s) => (s.memoryBytes = 1024 * 1024 + 0.5), /memory/],
    ['zero vcpus', (s) => (s.vcpus = 0), /vcpus/],
    ['too many vcpus', (s) => (s.vcpus = 256), /vcpus/],
    ['cpu period too small', (s) => (s.cputune = { period: 10 }), /cpu period/],
    ['cpu quota below -1', (s) => (s.cputune = { quota: -5 }), /cpu quota/],
    ['cpu shares 1', (s) => (s.cputune = { shares: 1 }), /cpu shares/],
    ['tap name too long', (s) => (s.nics = [{ kind: 'tap', ifName: 'eth0', mac: '0a:00:00:00:00:01', mtu: 1500, tap: 'a'.repeat(16) }]), /tap/],
    ['tap name with slash', (s) => (s.nics = [{ kind: 'tap', ifName: 'eth0', mac: '0a:00:00:00:00:01', mtu: 1500, tap: 'a/b' }]), /tap/],
    ['multicast mac', (s) => (s.nics = [{ kind: 'tap', ifName: 'eth0', mac: '01:00:5e:00:00:01', mtu: 1500, tap: 't0' }]), /multicast/],
    ['malformed mac', (s) => (s.nics = [{ kind: 'tap', ifName: 'eth0', mac: '0a:00:00:00:00', mtu: 1500, tap: 't0' }]), /mac/],
    [
      'duplicate mac',
      (s) =>
        (s.nics = [
          { kind: 'tap', ifName: 'eth0', mac: '0a:00:00:00:00:01', mtu: 1500, tap: 't0' },
          { kind: 'tap', ifName: 'net1', mac: '0A:00:00:00:00:01', mtu: 1500, tap: 't1' },
        ]),
      /duplicate/,
    ],
    ['mtu too small', (s) => (s.nics = [{ kind: 'tap', ifName: 'eth0', mac: '0a:00:00:00:00:01', mtu: 10, tap: 't0' }]), /mtu/],
    ['pci slot > 0x1f', (s) => (s.nics = [{ kind: 'sriov', ifName: 'net1', mac: '0a:00:00:00:00:01', pciAddress: '0000:03:20.0' }]), /PCI address/],
    ['pci garbage', (s) => (s.nics = [{ kind: 'sriov', ifName: 'net1', mac: '0a:00:00:00:00:01', pciAddress: '03:10.2' }]), /PCI address/],
    [
      'host-passthrough under TCG',
      (s) => {
        s.domainType = 'qemu';
        s.cpuMode = 'host-passthrough';
      },
      /cpu mode for TCG/,
    ],
    ['sandbox id with markup', (s) => (s.metadata = { sandboxId: 'a"><b', containerId: 'c' }), /sandbox id/],
  ];
  for (const [label, mutate, field] of cases) {
    const spec = multiNicSpec();
    mutate(spec);
    assert.throws(
      () => buildDomainXml(spec),
      (err: unknown) => err instanceof InvalidArgumentError && field.test(err.message),
      label,
    );
  }
});

test('parseDomainMetadata reads back what buildDomainXml wrote', () => {
  assert.deepEqual(parseDomainMetadata(buildDomainXml(multiNicSpec())), {
    sandboxId: 'a1b2c3d4e5f6',
    containerId: '0f3a9c2e71b4',
    seedKind: 'nocloud',
  });
  assert.deepEqual(parseDomainMetadata(buildDomainXml(scsiConfigDriveSpec())), {
    sandboxId: 'sb-77aa',
    containerId: 'ct-77aa',
    seedKind: 'configdrive',
  });
});

test('parseDomainMetadata goes by namespace URI, not prefix (libvirt may rewrite the prefix)', () => {
  const xml = `<domain type='kvm' id='3'>
  <name>vmlet-x</name>
  <metadata>
    <other:thing xmlns:other="http://example.com/other"><other:sandbox id="nope"/></other:thing>
    <v:instance xmlns:v="${VMLET_METADATA_NAMESPACE}">
      <v:sandbox id="sb1"/>
      <v:container id="ct1"/>
    </v:instance>
  </metadata>
</domain>`;
  assert.deepEqual(parseDomainMetadata(xml), { sandboxId: 'sb1', containerId: 'ct1' });
});

test('parseDomainMetadata returns undefined for foreign, incomplete or hostile metadata', () => {
  assert.equal(parseDomainMetadata(`<domain type='kvm'><name>other</name></domain>`), undefined);
  assert.equal(
    parseDomainMetadata(`<domain><metadata><i xmlns="http://example.com/x"><sandbox id="a"/><container id="b"/></i></metadata></domain>`),
    undefined,
  );
  assert.equal(
    parseDomainMetadata(
      `<domain><metadata><v:instance xmlns:v="${VMLET_METADATA_NAMESPACE}"><v:sandbox id="a"/></v:instance></metadata></domain>`,
    ),
    undefined,
  );
  assert.equal(
    parseDomainMetadata(
      `<domain><metadata><v:instance xmlns:v="${VMLET_METADATA_NAMESPACE}"><v:sandbox id="../../etc"/><v:container id="b"/></v:instance></metadata></domain>`,
    ),
    undefined,
  );
  assert.equal(parseDomainMetadata('this is not xml <<<'), undefined);
  assert.equal(parseDomainMetadata(''), undefined);
});

test('domain XML: files labelled by vmlet (QEMU user): emulator as root, libvirt relabels nothing', () => {
  const spec = multiNicSpec();
  assert.doesNotMatch(buildDomainXml(spec), /seclabel/);
  spec.filesLabelledByVmlet = true;
  const xml = buildDomainXml(spec);
  assert.match(xml, /<\/devices>\s*<seclabel type="static" model="dac" relabel="no">\s*<label>\+0:\+0<\/label>\s*<\/seclabel>\s*<qemu:commandline>/);
  assert.equal(xml.match(/<seclabel/g)?.length, 1);
});
