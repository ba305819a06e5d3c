/**
 * End to end, block volumes hot-plugged into a warm VM through vmlet's QMP socket (#22), one boot
 * of the busybox guest (test-guests/build-busybox.sh). Two loop devices of 64 MiB: an ext4 one,
 * read-write, labelled `cidata` with a meta-data file the test wrote, and a read-only one. The pod's
 * own seed is a config drive (label config-2), so the only `cidata` the guest's init finds is the
 * volume: its `instance-id` and `local-hostname` on the console prove the guest's kernel reads the
 * hot-plugged disk. On the host: QEMU (unprivileged, no path to the node in its private /dev) holds
 * the loop devices as fds vmlet passed (/dev/fdset/N), each with its serial and read-only flag;
 * libvirt's domain XML does not list them; a forced StopContainer ends QEMU and every fd with it
 * and gives the nodes' owners back.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { startTestDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { LoopDevices, ownerOf } from '../../helpers/loop_devices.js';
import { clearStaleTestSubnet, criLines, deleteLink, qemuPids, removeAllAndStop, serveTestGuest, waitFor } from '../../helpers/e2e.js';
import { QmpSocket } from '../../../src/qmp/socket.js';
import { BLOCK_GRANTS_DIR, QMP_DIR, warmQmpPath } from '../../../src/container/layout.js';

const tag = randomBytes(3).toString('hex');
const bridge = `vwb${tag}`;
const subnet = '198.19.52';

let d: TestDaemon;
let imageServer: Server;
let imageUrl: string;
let work: string;
const loops = new LoopDevices();

/** The devices a process holds open, by the path their fd links to. */
function openPaths(pid: number): string[] {
  return readdirSync(`/proc/${pid}/fd`).map((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      return '';
    }
  });
}

before(async () => {
  clearStaleTestSubnet(subnet);
  await ensureLibvirtd();
  ({ url: imageUrl, server: imageServer } = await serveTestGuest());
  work = mkdtempSync('/tmp/vmlet-warm-blk-');
  d = await startTestDaemon({ args: ['--kvm', 'off', '--vm-memory', '256Mi', '--vm-warm-pool', '1'] });
  writeFileSync(join(d.cniConfDir, '10-warm-blk.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-warm-blk-${tag}`,
    plugins: [{
      type: 'bridge', bridge, isGateway: true, ipMasq: false,
      ipam: { type: 'host-local', dataDir: join(d.dir, 'ipam'), ranges: [[{ subnet: `${subnet}.0/24`, gateway: `${subnet}.1` }]] },
    }],
  }));
});

after(async () => {
  await removeAllAndStop(d);
  imageServer?.close();
  deleteLink(bridge);
  loops.detachAll();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('a warm VM gets block volumes through QMP with fds vmlet opened; the guest reads the volume; a forced stop ends every fd and gives the nodes back', { timeout: 900_000 }, async (t) => {
  const started = performance.now();
  const rwDev = loops.make(join(work, 'rw.img'));
  const roDev = loops.make(join(work, 'ro.img'));
  // The volume: ext4 labelled cidata holding a meta-data file only this test wrote.
  const fill = join(work, 'fill');
  mkdirSync(fill);
  writeFileSync(join(fill, 'meta-data'), `instance-id: volume-${tag}\nlocal-hostname: vol-${tag}\n`);
  execFileSync('mkfs.ext4', ['-q', '-L', 'cidata', '-d', fill, rwDev]);
  const before = { rw: ownerOf(rwDev), ro: ownerOf(roDev) };

  await d.image.PullImage!({ image: { image: imageUrl } });
  await waitFor('the warm VM ready', 300_000, () => (d.output().includes('"msg":"warm VM ready"') ? true : undefined));
  const logDir = join(d.dir, 'pod-logs');
  mkdirSync(logDir, { recursive: true });
  const podConfig = {
    metadata: { name: 'warm-blk', namespace: 'default', uid: randomUUID(), attempt: 0 },
    hostname: 'warm-blk',
    log_directory: logDir,
    annotations: { VirtletCloudInitImageType: 'configdrive' },
    linux: {},
  };
  const { pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config: podConfig });
  const t0 = performance.now();
  const { container_id: id } = await d.runtime.CreateContainer!({
    pod_sandbox_id: sandboxId,
    config: {
      metadata: { name: 'vm', attempt: 0 },
      image: { image: imageUrl },
      log_path: 'vm.log',
      devices: [
        { host_path: rwDev, container_path: '/dev/testpvc', permissions: 'mrw' },
        { host_path: roDev, container_path: '/dev/rodisk', permissions: 'r' },
      ],
    },
    sandbox_config: podConfig,
  });
  const createMs = Math.round(performance.now() - t0);
  const verbose = JSON.parse((await d.runtime.ContainerStatus!({ container_id: id, verbose: true })).info.info) as { domain: string; domainXml: string };

  await t.test('the container has the warm VM, and libvirt attached nothing (its XML names neither device)', () => {
    assert.match(verbose.domain, /^vmlet-warm-/);
    assert.ok(!verbose.domainXml.includes(rwDev) && !verbose.domainXml.includes(roDev), verbose.domainXml);
    assert.doesNotMatch(verbose.domainXml, /<disk type=["']block["']/);
  });

  await t.test('QEMU holds both devices as passed fds, each with its serial and read-only flag, and cannot reach the nodes by path', async () => {
    const [pid] = qemuPids(d.stateDir);
    assert.ok(pid, 'the warm VM\'s QEMU runs');
    const held = openPaths(pid);
    assert.ok(held.includes(rwDev) && held.includes(roDev), held.join(' '));
    // libvirt's private /dev of this QEMU has no node for them.
    const qemuDev = readdirSync(`/proc/${pid}/root/dev`);
    assert.ok(!qemuDev.includes(rwDev.slice(5)) && !qemuDev.includes(roDev.slice(5)), qemuDev.join(' '));
    const qmp = await QmpSocket.connect(warmQmpPath(join(d.stateDir, QMP_DIR), id));
    try {
      const blocks = (await qmp.execute('query-block')) as { qdev?: string; inserted?: { 'node-name': string; ro: boolean; file: string } }[];
      const data = blocks.filter((b) => b.inserted?.['node-name']?.startsWith('vmletdata')).map((b) => [b.inserted!['node-name'], b.inserted!.ro, /^\/dev\/fdset\/\d+$/.test(b.inserted!.file)]);
      assert.deepEqual(data, [['vmletdata0', false, true], ['vmletdata1', true, true]]);
      for (const [node, serial] of [['vmletdata0', 'testpvc'], ['vmletdata1', 'rodisk']]) {
        assert.equal(await qmp.execute('qom-get', { path: `/machine/peripheral/${node}`, property: 'serial' }), serial);
      }
    } finally {
      qmp.close();
    }
    assert.equal(ownerOf(rwDev).split(':')[0], String(readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('vmlet-qemu:'))!.split(':')[2]), 'granted to QEMU\'s user as for a cold VM');
  });

  await d.runtime.StartContainer!({ container_id: id }, { deadlineMs: 180_000 });
  const logPath = join(logDir, 'vm.log');
  const t1 = performance.now();
  await waitFor('the busybox guest ready', 600_000, () => criLines(logPath).find((l) => l.text === 'VMLET-GUEST ready'));
  const bootMs = Math.round(performance.now() - t1);

  await t.test('the guest\'s kernel reads the hot-plugged volume: the cidata on it is a virtio disk', () => {
    const lines = criLines(logPath).map((l) => l.text);
    assert.ok(lines.some((l) => /^VMLET-GUEST seed \/dev\/vd[a-z]$/.test(l)), lines.join(' | '));
    assert.ok(lines.includes(`VMLET-GUEST instance-id volume-${tag}`), lines.join(' | '));
    assert.ok(lines.includes(`VMLET-GUEST hostname vol-${tag}`), lines.join(' | '));
  });

  await t.test('once running, QEMU holds each device once (the fd set\'s copy went after remove-fd), vmlet none', () => {
    const [pid] = qemuPids(d.stateDir);
    const held = openPaths(pid!);
    assert.deepEqual([held.filter((p) => p === rwDev).length, held.filter((p) => p === roDev).length], [1, 1], held.join(' '));
    const daemonHeld = openPaths(d.child.pid!);
    assert.ok(!daemonHeld.includes(rwDev) && !daemonHeld.includes(roDev), 'vmlet closed its fds');
  });

  await t.test('a forced StopContainer ends QEMU with every fd; the nodes\' owners are given back', async () => {
    await d.runtime.StopContainer!({ container_id: id, timeout: 0 });
    await waitFor('QEMU gone', 60_000, () => (qemuPids(d.stateDir).every((pid) => !openPaths(pid).some((p) => p === rwDev || p === roDev)) ? true : undefined));
    await waitFor('the grants given back', 30_000, () => (readdirSync(join(d.stateDir, BLOCK_GRANTS_DIR)).length === 0 ? true : undefined));
    assert.deepEqual({ rw: ownerOf(rwDev), ro: ownerOf(roDev) }, before);
    // The file system the guest mounted is intact.
    execFileSync('e2fsck', ['-n', rwDev], { stdio: 'ignore' });
  });
  await d.runtime.RemoveContainer!({ container_id: id });
  await d.runtime.StopPodSandbox!({ pod_sandbox_id: sandboxId });
  await d.runtime.RemovePodSandbox!({ pod_sandbox_id: sandboxId });
  process.stderr.write(`warm block hotplug: CreateContainer ${createMs} ms, boot to ready ${bootMs} ms, test ${Math.round(performance.now() - started)} ms\n`);
});
