/**
 * End to end, block volumes as VM disks (#22). Two loop devices of 64 MiB stand in for PVCs: an
 * ext4 one read-write at /dev/testpvc, mounted by user-data `mounts` unchanged, and one read-only
 * at /dev/rodisk. One Debian boot and one busybox boot, each checking a path:
 * - pod 1, the Debian 12 cloud-init guest (udev for /dev/disk/by-id, cloud-init's bootcmd and
 *   mounts, sshd) on a warm VM (the disks hot-plugged through QMP into the paused VM): the guest
 *   sees the disks by serial and at /dev/NAME, writes and syncs a file; the read-only one cannot be
 *   written; while it runs the nodes belong to QEMU's user; a forced stop (timeout 0) leaves the
 *   file on the device (read on the host) and the nodes' owners restored;
 * - pod 2, the busybox guest on a cold VM (VirtletSystemUUID rules the warm VM out), same devices:
 *   it has no shell to run commands in, but its init mounts the first filesystem labelled `cidata`
 *   and reports the `instance-id` and `local-hostname` of the `meta-data` file on it. The ext4
 *   volume is labelled `cidata` and the file pod 1's guest wrote is that `meta-data`; pod 2's own
 *   seed is a config drive (label config-2), so the only `cidata` is the volume and the guest's
 *   kernel reads pod 1's file off the device (cloud-init in pod 1 skips the volume as a seed: it
 *   holds no meta-data yet at that boot).
 * Before pod 2, hostile devices are refused (INVALID_ARGUMENT) with nothing changed on the host.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { status as grpcStatus } from '@grpc/grpc-js';
import { startTestDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { criLines, deleteLink, removeAllAndStop, waitFor } from '../../helpers/e2e.js';
import { buildTestGuest, makeSshKey, serveFiles, sshGuest, writeBridgeConflist, type SshKey } from '../../helpers/debian_guest.js';
import { LoopDevices, ownerOf } from '../../helpers/loop_devices.js';

const tag = randomBytes(3).toString('hex');
const bridge = `vbd${tag}`;
const subnet = '198.18.224';
const MIB = 1024 * 1024;

let d: TestDaemon;
let image: { url: string; busyboxUrl: string; close: () => void };
let key: SshKey;
let publicKey: string;
let work: string;
const loops = new LoopDevices();
const timings: Record<string, number> = {};

/** The Debian cloud guest and the busybox guest over HTTP. */
async function serveGuests(): Promise<{ url: string; busyboxUrl: string; close: () => void }> {
  const { base, close } = await serveFiles({ '/debian-cloud.qcow2': buildTestGuest('build-debian-cloud.sh'), '/busybox.qcow2': buildTestGuest('build-busybox.sh') });
  return { url: `${base}/debian-cloud.qcow2`, busyboxUrl: `${base}/busybox.qcow2`, close };
}

function qemuUid(): number {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('vmlet-qemu:'));
  assert.ok(line, 'the vmlet-qemu user exists (scripts/install.sh)');
  return Number(line.split(':')[2]);
}

function ssh(ip: string, command: string, timeoutMs?: number): Promise<string> {
  return sshGuest(key, ip, command, timeoutMs);
}

before(async () => {
  await ensureLibvirtd();
  image = await serveGuests();
  d = await startTestDaemon({ args: ['--kvm', 'off', '--vm-memory', '1Gi', '--vm-warm-pool', '1'] });
  work = join(d.dir, 'block');
  mkdirSync(work);
  key = makeSshKey(join(d.dir, 'id_ed25519'), `vmlet-blk-${tag}`);
  publicKey = key.publicKey;
  writeBridgeConflist(d, '10-blk.conflist', { name: `vmlet-blk-${tag}`, bridge, subnet });
});

after(async () => {
  try {
    await removeAllAndStop(d).catch(() => undefined);
  } finally {
    image?.close();
    deleteLink(bridge);
    // The daemon's volumes root (a shared mount kept across restarts) and the test's own mount.
    const mounted = d ? readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p === d.dir || p.startsWith(`${d.dir}/`)) : [];
    for (const m of mounted.reverse()) execFileSync('umount', ['--lazy', m]);
    loops.detachAll();
    if (d) rmSync(d.dir, { recursive: true, force: true });
    console.log(`# block devices guest timings: ${JSON.stringify(timings)}`);
  }
});

const userData = JSON.stringify({ mounts: [['/dev/testpvc', '/mnt/pvc', 'ext4', 'defaults,nofail', '0', '2']] });

function podConfig(name: string, annotations: Record<string, string> = {}) {
  return {
    metadata: { name: `${name}-${tag}`, namespace: 'default', uid: `uid-${name}-${tag}`, attempt: 0 },
    hostname: `${name}-${tag}`, log_directory: join(d.dir, 'pod-logs'), linux: {},
    annotations: { VirtletSSHKeys: publicKey, VirtletCloudInitUserData: userData, ...annotations },
  };
}

async function runPod(config: ReturnType<typeof podConfig>, devices: { container_path: string; host_path: string; permissions: string }[], guest = { image: image.url, memoryMiB: 1024, logPath: 'vm.log' }) {
  const t0 = performance.now();
  const { pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config });
  const t1 = performance.now();
  const ip = (await d.runtime.PodSandboxStatus!({ pod_sandbox_id: sandboxId })).status.network.ip as string;
  const { container_id: id } = await d.runtime.CreateContainer!({
    pod_sandbox_id: sandboxId,
    config: { metadata: { name: 'vm', attempt: 0 }, image: { image: guest.image }, log_path: guest.logPath, linux: { resources: { memory_limit_in_bytes: String(guest.memoryMiB * MIB) } }, devices },
    sandbox_config: config,
  });
  const t2 = performance.now();
  const domainXml = JSON.parse((await d.runtime.ContainerStatus!({ container_id: id, verbose: true })).info.info).domainXml as string;
  await d.runtime.StartContainer!({ container_id: id }, { deadlineMs: 180_000 });
  const t3 = performance.now();
  return { sandboxId, id, ip, domainXml, ms: { run: t1 - t0, create: t2 - t1, start: t3 - t2 } };
}

test('block volumes: warm VM writes, forced stop keeps the data, a cold VM reads it; read-only stays read-only; hostile devices refused', { timeout: 1_800_000 }, async (t) => {
  const started = performance.now();
  mkdirSync(join(d.dir, 'pod-logs'), { recursive: true });
  const rwDev = loops.make(join(work, 'pvc.img'));
  const roDev = loops.make(join(work, 'ro.img'));
  // Labelled cidata: pod 2's busybox guest reports the meta-data file on it (see the top).
  execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'cidata', rwDev]);
  const written = `instance-id: persisted-${tag}\nlocal-hostname: pvc-${tag}\n`;
  writeFileSync(roDev, `readonly-${tag}`.padEnd(512, '\0'));
  const rwBefore = ownerOf(rwDev);
  const roBefore = ownerOf(roDev);
  const grantsDir = join(d.stateDir, 'block-grants');
  const devices = [
    { container_path: '/dev/testpvc', host_path: rwDev, permissions: 'mrw' },
    { container_path: '/dev/rodisk', host_path: roDev, permissions: 'r' },
  ];

  await d.image.PullImage!({ image: { image: image.url } }, { deadlineMs: 300_000 });
  await d.image.PullImage!({ image: { image: image.busyboxUrl } }, { deadlineMs: 300_000 });
  await waitFor('a warm VM', 240_000, () => d.output().includes('warm VM ready') || undefined);
  const pod1 = await runPod(podConfig('blk1'), devices);
  timings['warm RunPodSandbox ms'] = Math.round(pod1.ms.run);
  timings['warm CreateContainer (2 block devices) ms'] = Math.round(pod1.ms.create);
  timings['warm StartContainer ms'] = Math.round(pod1.ms.start);
  const booted = performance.now();
  await waitFor(`an SSH login at ${pod1.ip}`, 900_000, () => ssh(pod1.ip, 'true', 20_000).then(() => true, () => undefined));
  await ssh(pod1.ip, 'cloud-init status --wait', 600_000).catch(() => undefined);
  timings['warm boot to ssh + cloud-init ms'] = Math.round(performance.now() - booted);

  await t.test('pod 1 is a warm VM; while it runs the nodes belong to QEMU\'s user alone (0600, read-only 0400)', () => {
    assert.match(pod1.domainXml, /<name>vmlet-warm-/);
    const uid = qemuUid();
    assert.equal(statSync(rwDev).uid, uid);
    assert.equal(statSync(rwDev).mode & 0o7777, 0o600);
    assert.equal(statSync(roDev).uid, uid);
    assert.equal(statSync(roDev).mode & 0o7777, 0o400);
    assert.deepEqual(readdirSync(grantsDir), [`${pod1.id}.json`]);
  });
  await t.test('the guest sees 64 MiB disks at /dev/disk/by-id/virtio-<serial> and at /dev/NAME', async () => {
    const out = await ssh(pod1.ip, 'for s in testpvc rodisk; do echo $s $(readlink -f /dev/disk/by-id/virtio-$s) $(readlink -f /dev/$s) $(sudo blockdev --getsize64 /dev/$s); done');
    const lines = out.trim().split('\n').map((l) => l.split(' '));
    assert.equal(lines.length, 2, out);
    for (const [serial, byId, link, size] of lines) {
      // The kernel's own name: vda on, since the root disk is SCSI (sda) by default.
      assert.match(byId ?? '', /^\/dev\/vd[a-z]$/, `${serial}: ${out}`);
      assert.equal(link, byId, `${serial}: ${out}`);
      assert.equal(Number(size), 64 * MIB);
    }
  });
  await t.test('user-data mounts: ["/dev/testpvc", "/mnt/pvc"] works unchanged; a file written and synced', async () => {
    assert.match(await ssh(pod1.ip, 'findmnt -n -o FSTYPE /mnt/pvc'), /ext4/);
    await ssh(pod1.ip, `printf '${written.replaceAll('\n', '\\n')}' | sudo tee /mnt/pvc/meta-data >/dev/null && sync`);
  });
  await t.test('the read-only device cannot be written from the guest, even by root', async () => {
    const out = await ssh(pod1.ip, 'sudo dd if=/dev/zero of=/dev/rodisk bs=512 count=1 oflag=direct 2>&1; echo rc=$?; sudo blockdev --getro /dev/rodisk');
    assert.doesNotMatch(out, /rc=0\b/, out);
    assert.match(out, /\n1\n?$/, out);
    const marker = `readonly-${tag}`;
    assert.equal(readFileSync(roDev).subarray(0, marker.length).toString(), marker);
  });
  await t.test('forced stop (timeout 0): the synced file is on the device; the nodes are given back', async () => {
    await d.runtime.StopContainer!({ container_id: pod1.id, timeout: '0' }, { deadlineMs: 60_000 });
    assert.equal(ownerOf(rwDev), rwBefore);
    assert.equal(ownerOf(roDev), roBefore);
    assert.deepEqual(readdirSync(grantsDir), []);
    const mnt = join(work, 'mnt');
    mkdirSync(mnt);
    execFileSync('mount', ['-o', 'ro,noload', rwDev, mnt]);
    try {
      assert.equal(readFileSync(join(mnt, 'meta-data'), 'utf8'), written);
    } finally {
      execFileSync('umount', [mnt]);
    }
    await d.runtime.RemoveContainer!({ container_id: pod1.id });
    await d.runtime.StopPodSandbox!({ pod_sandbox_id: pod1.sandboxId });
    await d.runtime.RemovePodSandbox!({ pod_sandbox_id: pod1.sandboxId });
    assert.equal(ownerOf(rwDev), rwBefore);
  });

  await t.test('hostile devices: /dev/null, a regular file, "../", a symlink out of /dev: INVALID_ARGUMENT, nothing changed', async () => {
    const config = podConfig('hostile');
    const { pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config });
    const file = join(work, 'plain');
    writeFileSync(file, 'x');
    // A block node outside /dev, reached through a link placed in /dev.
    const node = join(work, 'blknode');
    const { rdev } = statSync(rwDev);
    execFileSync('mknod', [node, 'b', String(Math.floor(rdev / 256) & 0xfff), String((rdev & 0xff) | ((rdev >> 12) & 0xfff00))]);
    const escape = `/dev/vmlet-test-escape-${tag}`;
    symlinkSync(node, escape);
    try {
      const hostile: [string, RegExp][] = [
        ['/dev/null', /character device/],
        [file, /regular file/],
        [`/dev/../${rwDev.slice(1)}`, /not an absolute normalized path/],
        [escape, /outside \/dev/],
        [node, /outside \/dev/],
      ];
      for (const [hostPath, message] of hostile) {
        await assert.rejects(
          d.runtime.CreateContainer!({
            pod_sandbox_id: sandboxId,
            config: { metadata: { name: 'vm', attempt: 0 }, image: { image: image.url }, devices: [{ container_path: '/dev/testpvc', host_path: rwDev, permissions: 'mrw' }, { container_path: '/dev/bad', host_path: hostPath, permissions: 'mrw' }] },
            sandbox_config: config,
          }),
          (err: { code?: number; details?: string }) => err.code === grpcStatus.INVALID_ARGUMENT && message.test(err.details ?? '') && (err.details ?? '').includes('devices[1]'),
          hostPath,
        );
        assert.equal(ownerOf(rwDev), rwBefore, hostPath);
        assert.deepEqual(readdirSync(grantsDir), [], hostPath);
      }
      assert.equal((await d.runtime.ListContainers!({})).containers.length, 0);
    } finally {
      rmSync(escape, { force: true });
      rmSync(node, { force: true });
      await d.runtime.StopPodSandbox!({ pod_sandbox_id: sandboxId });
      await d.runtime.RemovePodSandbox!({ pod_sandbox_id: sandboxId });
    }
  });

  const pod2Config = podConfig('blk2', { VirtletSystemUUID: randomUUID(), VirtletCloudInitImageType: 'configdrive' });
  const pod2 = await runPod(pod2Config, devices, { image: image.busyboxUrl, memoryMiB: 256, logPath: 'blk2.log' });
  timings['cold CreateContainer (2 block devices) ms'] = Math.round(pod2.ms.create);
  const pod2Log = join(d.dir, 'pod-logs', 'blk2.log');
  const t2 = performance.now();
  await waitFor('the busybox guest ready', 600_000, () => criLines(pod2Log).find((l) => l.text === 'VMLET-GUEST ready'));
  timings['cold busybox boot ms'] = Math.round(performance.now() - t2);

  await t.test('pod 2, a cold VM with the disks in its domain XML, reads what pod 1 wrote', () => {
    assert.doesNotMatch(pod2.domainXml, /<name>vmlet-warm-/);
    assert.match(pod2.domainXml, new RegExp(`<disk type=["']block["'] device=["']disk["']>\\s*<driver name=["']qemu["'] type=["']raw["'] cache=["']none["'] io=["']native["']/>\\s*<source dev=["']${rwDev}["']/>`));
    const lines = criLines(pod2Log).map((l) => l.text);
    // The guest's kernel mounted the volume (ext4 labelled cidata) and read pod 1's meta-data file.
    assert.ok(lines.some((l) => /^VMLET-GUEST seed \/dev\/vd[a-z]$/.test(l)), `the seed the guest found is a virtio disk: ${lines.join(' | ')}`);
    assert.ok(lines.includes(`VMLET-GUEST instance-id persisted-${tag}`), lines.join(' | '));
    assert.ok(lines.includes(`VMLET-GUEST hostname pvc-${tag}`), lines.join(' | '));
  });
  await t.test('RemoveContainer of a running VM gives the nodes back', async () => {
    await d.runtime.RemoveContainer!({ container_id: pod2.id });
    await waitFor('the grants to go', 30_000, () => (readdirSync(grantsDir).length === 0 ? true : undefined));
    assert.equal(ownerOf(rwDev), rwBefore);
    assert.equal(ownerOf(roDev), roBefore);
  });
  timings['test ms'] = Math.round(performance.now() - started);
});
