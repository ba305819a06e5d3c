/**
 * SR-IOV through the CRI, against a real `vmlet serve` (--sriov on), real netd, real libvirtd and
 * real namespaces, with a fake sysfs tree (--sysfs-root) whose bind/unbind files a fake kernel
 * acts on (test/helpers/fake_sriov_kernel.ts), a fake PF (test/fixtures/sriov/ip first in the
 * daemon's PATH) and a CNI test plugin (test/fixtures/cni/plugins/sriov-vf) chained after the
 * bridge plugin that makes the VF.
 *
 * What is checked where: CreateContainer defines the domain, and its XML (read back from libvirtd)
 * must have the hostdev at the fake VF's address and the TAP NIC of the bridge network. The VM is
 * never started: there is no PCI device behind the fake address, so QEMU could not open it, and
 * nothing about the VF changes at StartContainer (netd bound it before). No guest boot; the file
 * takes about 15 s.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startTestDaemon, REPO_ROOT, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { removeAllAndStop, waitFor } from '../../helpers/e2e.js';
import { startFakeSriovKernel, type FakeSriovKernel } from '../../helpers/fake_sriov_kernel.js';

const tag = randomBytes(3).toString('hex');
const bridge = `vsb${tag}`;
const pfName = `vpf${tag}`;
const PF = '0000:5e:00.0';
const VF = '0000:5e:02.3';
const VF_MAC = '02:5e:02:03:00:01';
const work = mkdtempSync(join(tmpdir(), 'vmlet-sriov-cri-'));
const sysfsRoot = join(work, 'sys');
const faultDir = join(work, 'faults');
const pfLog = join(work, 'pf.log');
const pluginLog = join(work, 'plugin.log');
let kernel: FakeSriovKernel;
let d: TestDaemon;
let imageServer: Server;
let imageUrl: string;
const uuidsToUndefine: string[] = [];

before(async () => {
  await ensureLibvirtd();
  mkdirSync(sysfsRoot);
  mkdirSync(faultDir);
  kernel = startFakeSriovKernel(sysfsRoot, { address: PF, name: pfName }, tag);
  const pfState = join(work, 'pf.json');
  writeFileSync(pfState, JSON.stringify([{ ifname: pfName, vfinfo_list: [{ vf: 3, address: '00:00:00:00:00:00', vlan_list: [{ vlan: 221, qos: 0 }], spoofchk: false, trust: false }] }]));
  // The VM is never started: an empty disk is image enough.
  const disk = join(work, 'disk.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '64M']);
  const bytes = readFileSync(disk);
  imageServer = createServer((_req, res) => res.writeHead(200, { 'content-length': bytes.length }).end(bytes));
  await new Promise<void>((r) => imageServer.listen(0, '127.0.0.1', () => r()));
  imageUrl = `http://127.0.0.1:${(imageServer.address() as AddressInfo).port}/disk.qcow2`;
  d = await startTestDaemon({
    args: ['--kvm', 'off', '--vm-memory', '256Mi', '--sriov', 'on', '--sysfs-root', sysfsRoot, '--cni-bin-dir', `/usr/lib/cni:${join(REPO_ROOT, 'test', 'fixtures', 'cni', 'plugins')}`],
    env: {
      PATH: `${join(REPO_ROOT, 'test', 'fixtures', 'sriov')}:${process.env.PATH}`,
      VMLET_TEST_FAKE_PF: pfName,
      VMLET_TEST_PF_STATE: pfState,
      VMLET_TEST_PF_LOG: pfLog,
      VMLET_TEST_FAULT_DIR: faultDir,
    },
  });
  writeFileSync(join(d.cniConfDir, '10-sriov.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-sriov-${tag}`,
    plugins: [
      { type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: join(work, 'ipam'), ranges: [[{ subnet: '198.18.220.0/24' }]] } },
      { type: 'sriov-vf', sysfsRoot, vf: VF, pf: PF, index: 3, group: 91, ifname: 'net1', mac: VF_MAC, mtu: 9000, address: '198.18.221.10/24', logFile: pluginLog },
    ],
  }));
  await d.image.PullImage!({ image: { image: imageUrl } });
});

after(async () => {
  await removeAllAndStop(d);
  for (const uuid of uuidsToUndefine) {
    try {
      execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'undefine', uuid], { stdio: 'ignore' });
    } catch {
      /* gone */
    }
  }
  kernel?.close();
  for (const name of [...(kernel?.hostNetdevs ?? []), bridge]) {
    try {
      execFileSync('ip', ['link', 'delete', name], { stdio: 'ignore' });
    } catch {
      /* gone */
    }
  }
  imageServer?.close();
  rmSync(work, { recursive: true, force: true });
});

function podConfig(name: string, annotations: Record<string, string> = {}) {
  return { metadata: { name, namespace: 'default', uid: `uid-${name}-${tag}` }, hostname: name, annotations };
}

async function vmSideReady(id: string): Promise<any> {
  return waitFor('the VM side ready', 60_000, async () => {
    const info = JSON.parse((await d.runtime.PodSandboxStatus!({ pod_sandbox_id: id, verbose: true })).info.info);
    assert.notEqual(info.network?.vmSide, 'failed', `VM side failed: ${info.network?.error}`);
    return info.network?.vmSide === 'ready' ? info : undefined;
  });
}

const driverOfVf = () => readlinkSync(join(sysfsRoot, 'bus', 'pci', 'devices', VF, 'driver')).split('/').pop();
const linksIn = (ns: string) => (JSON.parse(execFileSync('ip', ['-n', ns, '-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string }[]).map((l) => l.ifname);
const virshDomains = () => execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'list', '--all', '--name'], { encoding: 'utf8' }).split('\n').filter(Boolean);

/** Stop and remove; then nothing of the VF pod may be left: the VF on iavf, its entries gone (CNI DEL), no links. */
async function stopAndCheckRestored(id: string, ns: string, eventsBefore: number): Promise<void> {
  await d.runtime.StopPodSandbox!({ pod_sandbox_id: id });
  assert.deepEqual(kernel.events.slice(eventsBefore), [`vfio-pci/unbind ${VF}`, `iavf/bind ${VF}`]);
  assert.deepEqual(kernel.events.filter((e) => !/^\S+\/\S+ /.test(e)), [], 'the fake kernel refused nothing');
  // The PF's settings for the VF as they were before the pod.
  assert.equal(readFileSync(pfLog, 'utf8').trim().split('\n').pop(), `link set dev ${pfName} vf 3 mac 00:00:00:00:00:00 vlan 221 qos 0 spoofchk off trust off`);
  // The plugin's DEL found net1 with its MAC and MTU and the VF on iavf, then removed both.
  assert.equal(readFileSync(pluginLog, 'utf8').trim().split('\n').pop(), 'DEL ok');
  assert.equal(existsSync(join(sysfsRoot, 'bus', 'pci', 'devices', VF)), false);
  await d.runtime.RemovePodSandbox!({ pod_sandbox_id: id });
  assert.equal(existsSync(`/run/netns/${ns}`), false);
  assert.deepEqual(readdirSync(join(d.stateDir, 'netd')).filter((f) => f.endsWith('.json')), []);
  for (const name of kernel.hostNetdevs) {
    assert.throws(() => execFileSync('ip', ['link', 'show', 'dev', name], { stdio: 'ignore' }), `host netdev ${name} left behind`);
  }
  assert.deepEqual(virshDomains().filter((n) => n.includes(id.slice(0, 12))), []);
}

test('a VF pod: netd binds the VF to vfio-pci, CreateContainer defines the hostdev beside the TAP NIC (after one define that failed and rolled back), Stop restores it all', { timeout: 180_000 }, async () => {
  // A domain already holding this UUID makes the first define fail half way through CreateContainer.
  const clashUuid = randomUUID();
  const clashName = `vmlet-test-clash-${tag}`;
  const clashXml = join(work, 'clash.xml');
  writeFileSync(clashXml, `<domain type='qemu'><name>${clashName}</name><uuid>${clashUuid}</uuid><memory unit='MiB'>16</memory><os><type arch='x86_64'>hvm</type></os></domain>`);
  execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'define', clashXml], { stdio: 'ignore' });
  uuidsToUndefine.push(clashUuid);
  const pod = podConfig('vf', { VirtletSystemUUID: clashUuid });
  const eventsBefore = kernel.events.length;
  const { pod_sandbox_id: id } = await d.runtime.RunPodSandbox!({ config: pod });
  const info = await vmSideReady(id);
  const ns = (info.netnsPath as string).split('/').pop()!;
  const [eth0, net1] = info.network.vmNetwork.interfaces;
  assert.equal(eth0.binding.kind, 'tap');
  assert.deepEqual({ name: net1.name, mac: net1.mac, binding: net1.binding }, { name: 'net1', mac: VF_MAC, binding: { kind: 'sriov', pciAddress: VF } });
  assert.deepEqual(kernel.events.slice(eventsBefore), [`iavf/unbind ${VF}`, `vfio-pci/bind ${VF}`]);
  assert.equal(driverOfVf(), 'vfio-pci');
  assert.equal(readFileSync(join(sysfsRoot, 'bus', 'pci', 'devices', VF, 'driver_override'), 'utf8'), 'vfio-pci\n');
  assert.equal(readFileSync(pfLog, 'utf8').trim().split('\n').pop(), `link set dev ${pfName} vf 3 mac ${VF_MAC} vlan 221 qos 0 spoofchk on trust off`);
  assert.equal(linksIn(ns).includes('net1'), false, 'the VF netdev left the pod netns with its driver');

  const create = () => d.runtime.CreateContainer!({ pod_sandbox_id: id, config: { metadata: { name: 'vm' }, image: { image: imageUrl } }, sandbox_config: pod });
  const err = await create().then(() => assert.fail('CreateContainer defined a domain over a taken UUID'), (e: grpc.ServiceError) => e);
  assert.match(err.details, new RegExp(clashUuid));
  // libvirtd is shared: only this sandbox's domains (vmlet-<sandbox id prefix>-…) count.
  assert.deepEqual(virshDomains().filter((n) => n.includes(id.slice(0, 12))), [], 'the failed CreateContainer left no domain');
  assert.deepEqual((await d.runtime.ListContainers!({})).containers.filter((c: { pod_sandbox_id: string }) => c.pod_sandbox_id === id), []);
  // The VF stays the sandbox's (bound for the retry kubelet makes); only Stop gives it back.
  assert.equal(driverOfVf(), 'vfio-pci');
  assert.deepEqual(kernel.events.slice(eventsBefore).length, 2);

  execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'undefine', clashName], { stdio: 'ignore' });
  const { container_id: cid } = await create();
  const domain = JSON.parse((await d.runtime.ContainerStatus!({ container_id: cid, verbose: true })).info.info).domain as string;
  const xml = execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'dumpxml', domain], { encoding: 'utf8' });
  const hostdevs = xml.match(/<hostdev [^>]*>[\s\S]*?<\/hostdev>/g) ?? [];
  assert.equal(hostdevs.length, 1, xml);
  assert.match(hostdevs[0]!, /<hostdev mode='subsystem' type='pci' managed='no'>/);
  assert.match(hostdevs[0]!, /<source>\s*<address domain='0x0000' bus='0x5e' slot='0x02' function='0x3'\/>\s*<\/source>/);
  // TAP NICs are on QEMU's command line (docs/vmwrapper.md), one -netdev tap per TAP.
  const taps = [...xml.matchAll(/<qemu:arg value='tap,id=(\w+),ifname=([^,']+),/g)].map((m) => m[2]);
  assert.deepEqual(taps, [eth0.binding.tap], xml);
  assert.match(xml, new RegExp(`<qemu:arg value='virtio-net-pci,[^']*mac=${eth0.mac},`));
  assert.equal((xml.match(/<interface /g) ?? []).length, 0, 'no libvirt interface for the VF');

  await stopAndCheckRestored(id, ns, eventsBefore + 2);
});

test('netd SIGKILLed between binding the VF and recording it: the next netd restores the VF from its write-ahead plan and wires it again; Stop restores it', { timeout: 120_000 }, async () => {
  writeFileSync(join(faultDir, 'netd.vm-side.after-wire'), '');
  const eventsBefore = kernel.events.length;
  const { pod_sandbox_id: id } = await d.runtime.RunPodSandbox!({ config: podConfig('crash') });
  const info = await vmSideReady(id);
  assert.equal(existsSync(join(faultDir, 'netd.vm-side.after-wire')), false, 'the fault point fired');
  assert.match(d.output(), /netd died; restarting/);
  assert.deepEqual(kernel.events.slice(eventsBefore), [
    `iavf/unbind ${VF}`, `vfio-pci/bind ${VF}`, // the first netd, killed after this
    `vfio-pci/unbind ${VF}`, `iavf/bind ${VF}`, // the next one undoes it from the record on disk
    `iavf/unbind ${VF}`, `vfio-pci/bind ${VF}`, // and prepares the VM side again
  ]);
  assert.deepEqual(info.network.vmNetwork.interfaces[1].binding, { kind: 'sriov', pciAddress: VF });
  assert.equal(driverOfVf(), 'vfio-pci');
  await stopAndCheckRestored(id, (info.netnsPath as string).split('/').pop()!, eventsBefore + 6);
});

test('a VF whose IOMMU group is shared with another host device: the sandbox goes NOTREADY naming the VF, CreateContainer is FAILED_PRECONDITION, nothing was bound, Stop leaves nothing', { timeout: 60_000 }, async () => {
  // Another device in the group the plugin will put the VF in.
  const other = join(sysfsRoot, 'kernel', 'iommu_groups', '91', 'devices', '0000:5e:02.4');
  mkdirSync(join(sysfsRoot, 'kernel', 'iommu_groups', '91', 'devices'), { recursive: true });
  writeFileSync(other, '');
  const eventsBefore = kernel.events.length;
  const pfLines = readFileSync(pfLog, 'utf8');
  const pod = podConfig('shared');
  const { pod_sandbox_id: id } = await d.runtime.RunPodSandbox!({ config: pod });
  const status = await waitFor('NOTREADY', 30_000, async () => {
    const st = await d.runtime.PodSandboxStatus!({ pod_sandbox_id: id, verbose: true });
    return st.status.state === 'SANDBOX_NOTREADY' ? st : undefined;
  });
  const info = JSON.parse(status.info.info);
  assert.match(info.notReadyReason, new RegExp(`SR-IOV VF ${VF} \\(net1\\): its IOMMU group 91 is shared with other host devices \\(0000:5e:02\\.4\\)`));
  const err = await d.runtime.CreateContainer!({ pod_sandbox_id: id, config: { metadata: { name: 'vm' }, image: { image: imageUrl } }, sandbox_config: pod })
    .then(() => assert.fail('CreateContainer succeeded in a sandbox whose VF was refused'), (e: grpc.ServiceError) => e);
  assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
  assert.deepEqual(kernel.events.slice(eventsBefore), [], 'no bind or unbind was written');
  assert.equal(readFileSync(pfLog, 'utf8'), pfLines, 'the PF was not touched');
  assert.equal(driverOfVf(), 'iavf');
  const ns = (info.netnsPath as string).split('/').pop()!;
  assert.deepEqual(linksIn(ns).filter((l) => l !== 'lo').sort(), ['eth0', 'net1'], 'the eth0 wiring was undone; net1 is as CNI left it');
  await d.runtime.StopPodSandbox!({ pod_sandbox_id: id });
  assert.equal(readFileSync(pluginLog, 'utf8').trim().split('\n').pop(), 'DEL ok');
  await d.runtime.RemovePodSandbox!({ pod_sandbox_id: id });
  assert.equal(existsSync(`/run/netns/${ns}`), false);
  assert.equal(existsSync(join(sysfsRoot, 'bus', 'pci', 'devices', VF)), false);
  assert.deepEqual(readdirSync(join(d.stateDir, 'netd')).filter((f) => f.endsWith('.json')), []);
});
