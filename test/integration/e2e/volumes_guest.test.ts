/**
 * End to end, volumes (#12) on the real Debian 12 cloud-init guest, one boot for every check: a
 * warm VM (its virtiofs shares were there before the container existed; the volumes were bound
 * into them at CreateContainer and reached virtiofsd's mount namespace by propagation) gets
 * - a hostPath directory with a file (read in the guest) and a 256 MiB file (read throughput),
 * - a read-only ConfigMap-shaped directory on tmpfs (`..data` symlink layout, a 0600 root-owned
 *   "secret"): readable, not writable even by guest root remounting the share read-write, and an update made
 *   on the host by swapping `..data` is seen within seconds,
 * - an emptyDir, writable by guest root and by the non-root default user,
 * - /dev/termination-log and /etc/hosts as single-file mounts: what the guest writes is in the
 *   host file.
 * Then: nothing of the volumes is left (bind mounts, export directory) after RemoveContainer.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startTestDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { waitFor, qemuPids, removeAllAndStop, deleteLink } from '../../helpers/e2e.js';
import { buildTestGuest, DEBIAN_GUEST_USER as GUEST_USER, makeSshKey, serveFiles, sshGuest, writeBridgeConflist, type SshKey } from '../../helpers/debian_guest.js';

/** The Debian cloud guest (test-guests/build-debian-cloud.sh, cached), served on 127.0.0.1. */
async function serveTestGuestImage(): Promise<{ url: string; close: () => void }> {
  const { base, close } = await serveFiles({ '/debian-cloud.qcow2': buildTestGuest('build-debian-cloud.sh') });
  return { url: `${base}/debian-cloud.qcow2`, close };
}

const tag = randomBytes(3).toString('hex');
const bridge = `vvo${tag}`;
const subnet = '198.18.200';
const GIB = 1024 * 1024 * 1024;

let d: TestDaemon;
let image: { url: string; close: () => void };
let key: SshKey;
let publicKey: string;
let volumesRoot: string;
const timings: Record<string, number | string> = {};

before(async () => {
  await ensureLibvirtd();
  image = await serveTestGuestImage();
  d = await startTestDaemon({ args: ['--kvm', 'off', '--vm-memory', '1Gi', '--vm-warm-pool', '1'] });
  key = makeSshKey(join(d.dir, 'id_ed25519'), `vmlet-vol-${tag}`);
  publicKey = key.publicKey;
  writeBridgeConflist(d, '10-vol.conflist', { name: `vmlet-vol-${tag}`, bridge, subnet });
  volumesRoot = join(d.stateDir, 'volumes');
});

after(async () => {
  try {
    // Removes every pod through the CRI and stops the daemon; removing the test directory then
    // fails (EBUSY) while the daemon's volumes root (a shared mount kept across restarts) is mounted.
    await removeAllAndStop(d).catch(() => undefined);
    for (const m of mountPointsUnder(d.dir).reverse()) execFileSync('umount', ['--lazy', m]);
    rmSync(d.dir, { recursive: true, force: true });
  } finally {
    image?.close();
    deleteLink(bridge);
    console.log(`# volumes guest timings: ${JSON.stringify(timings)}`);
  }
});

function mountPointsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p === dir || p.startsWith(`${dir}/`));
}

function ssh(ip: string, command: string, timeoutMs?: number): Promise<string> {
  return sshGuest(key, ip, command, timeoutMs);
}

/** A ConfigMap volume as kubelet's atomic writer lays it out. */
function writeConfigMap(dir: string, version: string, value: string): void {
  const data = join(dir, `..${version}`);
  mkdirSync(data);
  writeFileSync(join(data, 'key'), value);
  writeFileSync(join(data, 'secret'), `s3cret-${version}`, { mode: 0o600 });
  symlinkSync(`..${version}`, join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
}

test('volumes in a warm VM: hostPath, read-only ConfigMap with ..data, emptyDir, single files, termination log', { timeout: 1_500_000 }, async (t) => {
  const host = join(d.dir, 'host');
  const hostData = join(host, 'hostpath');
  const configMap = join(host, 'configmap');
  const emptyDir = join(host, 'emptydir');
  const termLog = join(host, 'termination-log');
  const hosts = join(host, 'etc-hosts');
  mkdirSync(hostData, { recursive: true });
  mkdirSync(configMap);
  mkdirSync(emptyDir);
  chmodSync(emptyDir, 0o777);
  // kubelet puts ConfigMaps, Secrets and tokens on tmpfs.
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0755', `vmlet-vol-${tag}`, configMap]);
  writeFileSync(join(hostData, 'hello'), `hello-${tag}\n`);
  execFileSync('dd', ['if=/dev/urandom', `of=${join(hostData, 'big')}`, 'bs=1M', 'count=256', 'status=none']);
  mkdirSync(join(hostData, 'small'));
  for (let i = 0; i < 200; i++) writeFileSync(join(hostData, 'small', `f${i}`), 'x'.repeat(1024));
  writeConfigMap(configMap, '2024_01_01', 'v1');
  symlinkSync('..data/key', join(configMap, 'key'));
  symlinkSync('..data/secret', join(configMap, 'secret'));
  writeFileSync(termLog, '', { mode: 0o644 });
  writeFileSync(hosts, `127.0.0.1 localhost\n198.18.200.99 vol-${tag}\n`, { mode: 0o644 });

  await d.image.PullImage!({ image: { image: image.url } }, { deadlineMs: 300_000 });
  await waitFor('a warm VM', 180_000, () => d.output().includes('warm VM ready') || undefined);
  const logDir = join(d.dir, 'pod-logs');
  mkdirSync(logDir, { recursive: true });
  const podConfig = {
    metadata: { name: `vol-${tag}`, namespace: 'default', uid: `uid-vol-${tag}`, attempt: 0 },
    hostname: `vol-${tag}`, log_directory: logDir, linux: {},
    annotations: { VirtletSSHKeys: publicKey },
  };
  const runStart = performance.now();
  const { pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config: podConfig });
  const runMs = performance.now() - runStart;
  const sandbox = await d.runtime.PodSandboxStatus!({ pod_sandbox_id: sandboxId, verbose: true });
  const ip = sandbox.status.network.ip as string;
  const createStart = performance.now();
  const { container_id: id } = await d.runtime.CreateContainer!({
    pod_sandbox_id: sandboxId,
    config: {
      metadata: { name: 'vm', attempt: 0 }, image: { image: image.url }, log_path: 'vm.log',
      linux: { resources: { memory_limit_in_bytes: String(GIB) } },
      mounts: [
        { container_path: '/etc/hosts', host_path: hosts },
        { container_path: '/dev/termination-log', host_path: termLog },
        { container_path: '/mnt/host-data', host_path: hostData },
        { container_path: '/etc/config', host_path: configMap, readonly: true },
        { container_path: '/data', host_path: emptyDir },
      ],
    },
    sandbox_config: podConfig,
  });
  const createMs = performance.now() - createStart;
  const status = await d.runtime.ContainerStatus!({ container_id: id, verbose: true });
  const domainXml = JSON.parse(status.info.info).domainXml as string;
  const startStart = performance.now();
  await d.runtime.StartContainer!({ container_id: id }, { deadlineMs: 180_000 });
  timings['RunPodSandbox ms'] = Math.round(runMs);
  timings['CreateContainer (5 mounts, warm) ms'] = Math.round(createMs);
  timings['StartContainer ms'] = Math.round(performance.now() - startStart);
  await waitFor(`an SSH login at ${ip}`, 600_000, () => ssh(ip, 'true', 20_000).then(() => true, () => undefined));
  await ssh(ip, 'cloud-init status --wait', 600_000).catch(() => undefined);

  await t.test('a warm VM with the two virtiofs shares and shared memfd memory; QEMU still has no capabilities', () => {
    assert.match(domainXml, /<name>vmlet-warm-/);
    assert.match(domainXml, /<memoryBacking>\s*<source type=["']memfd["']\/>\s*<access mode=["']shared["']\/>/);
    for (const share of ['ro', 'rw']) {
      assert.match(domainXml, new RegExp(`<driver type=["']virtiofs["'][^>]*/>[\\s\\S]*?<source dir=["'][^"']*/volumes/[0-9a-f]{64}/${share}["']/>\\s*<target dir=["']vmlet-${share}["']/>`));
    }
    const pids = qemuPids().filter((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(id.slice(0, 12)));
    assert.equal(pids.length, 1);
    assert.match(readFileSync(`/proc/${pids[0]}/status`, 'utf8'), /^CapEff:\s+0+$/m);
    // One virtiofsd per share (a parent and its sandboxed child), started by libvirt for this VM.
    const daemons = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).flatMap((pid) => {
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        const source = argv.find((a) => a.startsWith('source='))?.slice('source='.length);
        return argv[0] === '/usr/lib/qemu/virtiofsd' && source?.startsWith(`${volumesRoot}/${id}/`) ? [{ pid, source }] : [];
      } catch {
        return [];
      }
    });
    assert.deepEqual([...new Set(daemons.map((x) => x.source))].sort(), [`${volumesRoot}/${id}/ro`, `${volumesRoot}/${id}/rw`]);
    // In the read-only share's virtiofsd (pivoted into it), the share and the ConfigMap entry bound
    // after it started (propagated) are read-only mounts, whatever the guest sends.
    const pivoted = daemons.filter((x) => x.source.endsWith('/ro')).map((x) => readFileSync(`/proc/${x.pid}/mountinfo`, 'utf8'))
      .map((text) => text.split('\n').map((l) => l.split(' ')))
      // The sandboxed child only: there the share is `/` (its parent still sees the host's tree).
      .filter((lines) => lines.some((f) => f[4] === '/3'))
      .flatMap((lines) => lines.filter((f) => f[4] === '/' || f[4] === '/3'));
    assert.deepEqual([...new Set(pivoted.map((f) => f[4]))].sort(), ['/', '/3'], JSON.stringify(pivoted));
    for (const f of pivoted) assert.match(f[5] ?? '', /^ro,/, f.join(' '));
    assert.deepEqual(status.status.mounts.map((m: { container_path: string; readonly: boolean; propagation: string }) => [m.container_path, m.readonly, m.propagation ?? 'PROPAGATION_PRIVATE']), [
      ['/etc/hosts', false, 'PROPAGATION_PRIVATE'], ['/dev/termination-log', false, 'PROPAGATION_PRIVATE'], ['/mnt/host-data', false, 'PROPAGATION_PRIVATE'],
      ['/etc/config', true, 'PROPAGATION_PRIVATE'], ['/data', false, 'PROPAGATION_PRIVATE'],
    ]);
  });
  await t.test('hostPath: the host file is read in the guest', async () => {
    assert.equal((await ssh(ip, 'cat /mnt/host-data/hello')).trim(), `hello-${tag}`);
    assert.match(await ssh(ip, 'findmnt -n -o FSTYPE /mnt/host-data'), /virtiofs/);
  });
  await t.test('/etc/hosts is the host file (single-file mount)', async () => {
    assert.match(await ssh(ip, 'cat /etc/hosts'), new RegExp(`vol-${tag}`));
  });
  await t.test('ConfigMap: ..data layout read through the share, root-only 0600 file readable by guest root', async () => {
    assert.equal((await ssh(ip, 'cat /etc/config/key')).trim(), 'v1');
    assert.equal((await ssh(ip, 'sudo cat /etc/config/secret')).trim(), 's3cret-2024_01_01');
    assert.equal((await ssh(ip, 'readlink /etc/config/..data')).trim(), '..2024_01_01');
  });
  await t.test('ConfigMap: not writable, even by guest root remounting the share read-write', async () => {
    const out = await ssh(ip, [
      'sudo sh -c "echo x > /etc/config/new" 2>&1; echo rc=$?',
      'sudo mount -o remount,rw /etc/config 2>&1; sudo sh -c "echo x > /etc/config/new2" 2>&1; echo rc=$?',
      // The share itself made read-write in the guest: only the host's read-only mounts stop it.
      'sudo mount -o remount,rw /run/vmlet/volumes/ro 2>&1; echo opts=$(findmnt -n -o OPTIONS /run/vmlet/volumes/ro)',
      'sudo test -e /run/vmlet/volumes/ro/3/key && echo entry=3',
      'sudo sh -c "echo x > /run/vmlet/volumes/ro/3/new3" 2>&1; echo rc=$?',
      'sudo sh -c "echo x > /run/vmlet/volumes/ro/new4" 2>&1; echo rc=$?',
    ].join('; '));
    assert.match(out, /opts=rw[,\s]/, out);
    assert.match(out, /entry=3/, out);
    const rcs = out.match(/rc=\d+/g) ?? [];
    assert.equal(rcs.length, 4, out);
    assert.ok(rcs.every((rc) => rc !== 'rc=0'), out);
    assert.equal(out.match(/Read-only file system/g)?.length, 4, out);
    assert.deepEqual(readdirSync(configMap).sort(), ['..2024_01_01', '..data', 'key', 'secret']);
  });
  await t.test('ConfigMap: an update on the host (..data swapped) shows within seconds', async () => {
    writeConfigMap(configMap, '2024_02_02', 'v2');
    const swapped = performance.now();
    await waitFor('v2 in the guest', 30_000, async () => ((await ssh(ip, 'cat /etc/config/key')).trim() === 'v2' ? true : undefined));
    timings['ConfigMap update seen after ms (incl. ssh)'] = Math.round(performance.now() - swapped);
  });
  await t.test('emptyDir: writable by guest root and by the non-root default user; the host sees the files', async () => {
    await ssh(ip, `sudo sh -c "echo root-${tag} > /data/by-root"; echo user-${tag} > /data/by-user; mkdir /data/dir; echo n > /data/dir/f; ls -ln /data/by-user`);
    assert.equal(readFileSync(join(emptyDir, 'by-root'), 'utf8').trim(), `root-${tag}`);
    assert.equal(readFileSync(join(emptyDir, 'by-user'), 'utf8').trim(), `user-${tag}`);
    // virtiofsd creates files as the guest user: the guest sees its own user as owner.
    assert.equal((await ssh(ip, 'stat -c %U /data/by-user')).trim(), GUEST_USER);
  });
  await t.test('termination log: what the guest writes is in the host file', async () => {
    await ssh(ip, `sudo sh -c "echo bye-${tag} > /dev/termination-log"`);
    assert.equal(readFileSync(termLog, 'utf8').trim(), `bye-${tag}`);
  });
  await t.test('measured: 256 MiB read and small-file latency in the guest (TCG)', async () => {
    const big = await ssh(ip, 'sudo sh -c "echo 3 > /proc/sys/vm/drop_caches"; set -e; s=$(date +%s%N); cat /mnt/host-data/big > /dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))', 300_000);
    const ms = Number(big.trim());
    timings['256 MiB read ms'] = ms;
    timings['256 MiB read MiB/s'] = +(256_000 / ms).toFixed(1);
    // The shell's own `read` (no fork per file), guest caches dropped first: lookup+open+read+close.
    const readAll = (dir: string) => `sudo sh -c "echo 3 > /proc/sys/vm/drop_caches"; s=$(date +%s%N); for f in ${dir}/*; do read -r x < "$f" || :; done; e=$(date +%s%N); echo $(( (e - s) / 1000 / 200 ))`;
    const small = await ssh(ip, `set -e; test -f /mnt/host-data/small/f0; ${readAll('/mnt/host-data/small')}`, 300_000);
    timings['small file (1 KiB) open+read+close, µs each'] = Number(small.trim());
    const local = await ssh(ip, `mkdir -p /tmp/sm; for i in $(seq 200); do head -c 1024 /dev/zero > /tmp/sm/f$i; done; sync; ${readAll('/tmp/sm')}`, 300_000);
    timings['same on the guest root disk, µs each'] = Number(local.trim());
    assert.ok(Number(small.trim()) > 0, small);
    assert.ok(ms > 0);
  });
  await t.test('RemoveContainer: volumes unmounted on the host, export directory removed, host files kept', async () => {
    await d.runtime.StopContainer!({ container_id: id, timeout: '60' }, { deadlineMs: 120_000 });
    await d.runtime.RemoveContainer!({ container_id: id });
    assert.deepEqual(mountPointsUnder(join(volumesRoot, id)), []);
    assert.equal(existsSync(join(volumesRoot, id)), false);
    assert.equal(readFileSync(join(hostData, 'hello'), 'utf8').trim(), `hello-${tag}`);
    assert.ok(existsSync(join(emptyDir, 'by-user')));
    assert.equal(readFileSync(termLog, 'utf8').trim(), `bye-${tag}`);
    await d.runtime.StopPodSandbox!({ pod_sandbox_id: sandboxId });
    await d.runtime.RemovePodSandbox!({ pod_sandbox_id: sandboxId });
  });
  await t.test('after vmlet stops with no VM left: the volumes and staging directories are unmounted, empty', async () => {
    assert.equal(await d.stop(), 0);
    assert.deepEqual(readdirSync(volumesRoot), []);
    assert.deepEqual(mountPointsUnder(volumesRoot), []);
    assert.deepEqual(mountPointsUnder(`${volumesRoot}-stage`), []);
    execFileSync('umount', [configMap]);
    rmSync(host, { recursive: true, force: true });
  });
});
