/**
 * End to end, the persistent root disk (#22) with a real guest: the Debian 12 cloud-init test guest
 * (test-guests/build-debian-cloud.sh) on a loop device given as container_path "/". Two boots:
 * - pod 1 initialises the device from the image and boots it; the guest (over SSH, pod 1's key)
 *   writes a file and syncs; the pod is stopped (ACPI) and removed: nothing of it is left, the
 *   device keeps its contents and gets its owner back;
 * - vmlet is restarted on the same state directory;
 * - pod 2 (another name and hostname, another SSH key in its seed) boots the same device as it is:
 *   the file is there, cloud-init took pod 2 as a new instance (pod 2's instance-id, hostname,
 *   key, address; new SSH host keys), and what cloud-init keeps from pod 1 is asserted as it is
 *   (it adds keys to authorized_keys and removes none, so pod 1's key still logs in);
 * - pod 2 is stopped and removed: nothing left, the device's header still names the image.
 * The busybox variant (persistent_root.test.ts) covers re-initialisation and the refusals.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startTestDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { waitFor, qemuPids, removeAllAndStop, deleteLink, clearStaleTestSubnet } from '../../helpers/e2e.js';
import { buildTestGuest, hostKeyFingerprints, makeSshKey, serveFiles, sshGuest, writeBridgeConflist, type SshKey } from '../../helpers/debian_guest.js';
import { ownDomains } from '../../helpers/own_domains.js';
import { BLOCK_GRANTS_DIR } from '../../../src/container/layout.js';
import { HEAD_BYTES, ROOT_PAYLOAD_OFFSET, decodeRootHeader } from '../../../src/container/block_devices/root_header.js';

const tag = randomBytes(3).toString('hex');
const bridge = `vrg${tag}`;
const subnet = '198.19.50';
const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
const DAEMON_ARGS = ['--kvm', 'off', '--vm-memory', '1Gi'];
/** The 2 GiB image, vmlet's 1 MiB header, and room to spare (a sparse file: only what is written takes space). */
const DEVICE_BYTES = 2 * GIB + 64 * MIB;
const PROOF_PATH = '/var/lib/vmlet-proof';
const PROOF = `written by the guest of pod 1 ${tag}`;

let d: TestDaemon;
let images: { base: string; close: () => void } | undefined;
let imageUrl = '';
let work = '';
let dev = '';
let key1: SshKey;
let key2: SshKey;
const timings: Record<string, number> = {};
const started = performance.now();

before(async () => {
  clearStaleTestSubnet(subnet);
  await ensureLibvirtd();
  images = await serveFiles({ '/debian-cloud.qcow2': buildTestGuest('build-debian-cloud.sh') });
  imageUrl = `${images.base}/debian-cloud.qcow2`;
  work = mkdtempSync(join(tmpdir(), 'vmlet-prootg-'));
  execFileSync('truncate', ['-s', String(DEVICE_BYTES), join(work, 'root.img')]);
  dev = execFileSync('losetup', ['-f', '--show', join(work, 'root.img')], { encoding: 'utf8' }).trim();
  d = await startTestDaemon({ args: DAEMON_ARGS });
  key1 = makeSshKey(join(work, 'pod1_ed25519'), `vmlet-prootg1-${tag}`);
  key2 = makeSshKey(join(work, 'pod2_ed25519'), `vmlet-prootg2-${tag}`);
  writeBridgeConflist(d, '10-proot-guest.conflist', { name: `vmlet-prootg-${tag}`, bridge, subnet });
});

after(async () => {
  try {
    // Its cleanup unmounts the daemon's volumes root (kept mounted across restarts) and removes its dir.
    await removeAllAndStop(d).catch(() => undefined);
  } finally {
    images?.close();
    deleteLink(bridge);
    if (dev) {
      try {
        execFileSync('losetup', ['-d', dev]);
      } catch {
        /* already detached */
      }
    }
    if (work) rmSync(work, { recursive: true, force: true });
    console.log(`# persistent root guest timings (ms): ${JSON.stringify({ ...timings, 'whole file': Math.round(performance.now() - started) })}`);
  }
});

interface Pod {
  name: string;
  sandboxId: string;
  id: string;
  ip: string;
  netns: string;
}

async function runPod(name: string, key: SshKey): Promise<Pod> {
  const logDir = join(d.dir, 'pod-logs', name);
  mkdirSync(logDir, { recursive: true });
  const config = {
    metadata: { name, namespace: 'default', uid: `uid-${name}`, attempt: 0 },
    hostname: name, log_directory: logDir, linux: {},
    annotations: { VirtletSSHKeys: key.publicKey },
  };
  const { pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config });
  const sandbox = await d.runtime.PodSandboxStatus!({ pod_sandbox_id: sandboxId, verbose: true });
  const ip = sandbox.status.network.ip as string;
  const netns = JSON.parse(sandbox.info.info).netnsPath as string;
  const t0 = performance.now();
  const { container_id: id } = await d.runtime.CreateContainer!({
    pod_sandbox_id: sandboxId,
    config: {
      metadata: { name: 'vm', attempt: 0 }, image: { image: imageUrl }, log_path: 'vm.log',
      linux: { resources: { memory_limit_in_bytes: String(GIB) } },
      devices: [{ container_path: '/', host_path: dev, permissions: 'mrw' }],
    },
    sandbox_config: config,
  }, { deadlineMs: 300_000 });
  timings[`${name.split('-')[0]}: CreateContainer`] = Math.round(performance.now() - t0);
  return { name, sandboxId, id, ip, netns };
}

async function boot(p: Pod, key: SshKey): Promise<void> {
  const t0 = performance.now();
  await d.runtime.StartContainer!({ container_id: p.id }, { deadlineMs: 180_000 });
  await waitFor(`an SSH login to ${p.name} at ${p.ip}`, 900_000, () => sshGuest(key, p.ip, 'true', 20_000).then(() => true, () => undefined));
  const status = await sshGuest(key, p.ip, 'cloud-init status --long --wait', 600_000).catch((err: { stdout?: string; message: string }) => `${err.stdout ?? ''} ${err.message}`);
  timings[`${p.name.split('-')[0]}: StartContainer to SSH login and cloud-init done`] = Math.round(performance.now() - t0);
  assert.match(status, /^status: done$/m, status);
}

async function stopAndRemove(p: Pod): Promise<void> {
  const t0 = performance.now();
  await d.runtime.StopContainer!({ container_id: p.id, timeout: '60' }, { deadlineMs: 120_000 });
  const stopped = (await d.runtime.ContainerStatus!({ container_id: p.id })).status;
  assert.equal(stopped.state, 'CONTAINER_EXITED');
  assert.equal(stopped.exit_code ?? 0, 0, `clean ACPI power-off (${stopped.reason}: ${stopped.message})`);
  timings[`${p.name.split('-')[0]}: StopContainer`] = Math.round(performance.now() - t0);
  await d.runtime.RemoveContainer!({ container_id: p.id });
  await d.runtime.StopPodSandbox!({ pod_sandbox_id: p.sandboxId });
  await d.runtime.RemovePodSandbox!({ pod_sandbox_id: p.sandboxId });
}

function ownerOf(path: string): string {
  const st = statSync(path);
  return `${st.uid}:${st.gid}:${(st.mode & 0o7777).toString(8)}`;
}

function header() {
  const fd = openSync(dev, 'r');
  try {
    const b = Buffer.alloc(HEAD_BYTES);
    readSync(fd, b, 0, HEAD_BYTES, 0);
    return decodeRootHeader(b);
  } finally {
    closeSync(fd);
  }
}

/** After Stop/Remove of every pod: nothing of them is left, the device is given back untouched in its header. */
function assertNothingLeft(p: Pod, deviceOwner: string, imageDigest: string): void {
  assert.deepEqual(ownDomains(d.stateDir), [], 'no domain of this vmlet');
  assert.deepEqual(qemuPids(d.stateDir), [], 'no QEMU of this vmlet');
  assert.equal(existsSync(p.netns), false, `netns ${p.netns} left`);
  assert.deepEqual(readdirSync(join(d.stateDir, 'vms')), [], 'no VM directory');
  const grants = join(d.stateDir, BLOCK_GRANTS_DIR);
  assert.deepEqual(existsSync(grants) ? readdirSync(grants) : [], [], 'no grant record: the device is released');
  assert.equal(ownerOf(dev), deviceOwner, 'the node has its owner and mode back');
  assert.deepEqual(readdirSync(join(d.dir, 'ipam', `vmlet-prootg-${tag}`)).filter((f) => /^\d/.test(f)), [], 'no IPAM lease');
  const h = header();
  assert.equal(h.kind === 'vmlet' && h.header.complete && h.header.imageDigest, imageDigest, 'the header still names the image');
}

test('persistent root disk, Debian guest: written by pod 1, kept across a vmlet restart, booted by pod 2 as a new cloud-init instance', { timeout: 3_000_000 }, async (t) => {
  const { image_ref: imageDigest } = await d.image.PullImage!({ image: { image: imageUrl } }, { deadlineMs: 300_000 });
  const deviceOwner = ownerOf(dev);

  // Pod 1: the blank device is initialised from the image and booted.
  const p1 = await runPod(`prootg1-${tag}`, key1);
  assert.doesNotMatch(d.output(), /overwriting the contents of persistent root disk/, 'a blank device is no warning');
  const h1 = header();
  assert.equal(h1.kind === 'vmlet' && h1.header.imageDigest, imageDigest);
  await boot(p1, key1);
  let pod1HostKeys: string[] = [];
  await t.test('pod 1: the root file system is on the device (the SCSI root disk), the hostname and address are pod 1\'s', async () => {
    const out = await sshGuest(key1, p1.ip, 'findmnt -n -o SOURCE /; hostname; ip -4 -o addr show dev eth0');
    const [rootDev, hostname, addr] = out.trim().split('\n');
    assert.equal(rootDev, '/dev/sda2');
    // The guest's disk is the device after vmlet's 1 MiB header, all of it.
    assert.equal(Number((await sshGuest(key1, p1.ip, 'lsblk -bdno SIZE /dev/sda')).trim()), DEVICE_BYTES - ROOT_PAYLOAD_OFFSET);
    assert.equal(hostname, p1.name);
    assert.match(addr ?? '', new RegExp(` inet ${p1.ip.replaceAll('.', '\\.')}/24 `));
    pod1HostKeys = await hostKeyFingerprints(p1.ip);
    assert.ok(pod1HostKeys.length > 0, 'ssh-keyscan saw host keys');
  });
  await t.test('pod 1: the guest writes a file and syncs', async () => {
    await sshGuest(key1, p1.ip, `echo '${PROOF}' | sudo tee ${PROOF_PATH} >/dev/null && sync`);
    assert.equal((await sshGuest(key1, p1.ip, `cat ${PROOF_PATH}`)).trim(), PROOF);
  });
  await t.test('pod 1 stopped and removed: no domain, QEMU, netns, VM dir, grant or lease left; the device is given back', async () => {
    await stopAndRemove(p1);
    assertNothingLeft(p1, deviceOwner, imageDigest);
  });

  // vmlet restarted on the same state directory.
  await t.test('vmlet restarts on the same state directory', async () => {
    const t0 = performance.now();
    assert.equal(await d.stop(), 0);
    d = await startTestDaemon({ dir: d.dir, args: DAEMON_ARGS });
    timings['vmlet restart'] = Math.round(performance.now() - t0);
  });

  // Pod 2: another pod, another key, the same device; booted as it is.
  const p2 = await runPod(`prootg2-${tag}`, key2);
  await t.test('pod 2: CreateContainer boots the device as it is (no rewrite, no warning); pod 2 has its own address', () => {
    assert.match(d.output(), /persistent root disk holds the image: booting it as it is/);
    assert.doesNotMatch(d.output(), /overwriting the contents of persistent root disk/);
    assert.notEqual(p2.ip, p1.ip);
  });
  await boot(p2, key2);
  await t.test('pod 2: the file pod 1\'s guest wrote is there', async () => {
    assert.equal((await sshGuest(key2, p2.ip, `cat ${PROOF_PATH}`)).trim(), PROOF);
  });
  await t.test('pod 2: cloud-init ran it as a new instance (pod 2\'s instance-id) without errors', async () => {
    assert.equal((await sshGuest(key2, p2.ip, 'cat /var/lib/cloud/data/instance-id')).trim(), p2.id);
    // Every instance keeps its directory; `instance` points at the current one.
    const dirs = (await sshGuest(key2, p2.ip, 'ls /var/lib/cloud/instances; readlink /var/lib/cloud/instance')).trim().split('\n');
    assert.deepEqual(dirs.slice(0, -1).sort(), [p1.id, p2.id].sort(), dirs.join(' '));
    assert.equal(dirs.at(-1), `/var/lib/cloud/instances/${p2.id}`);
    const result = JSON.parse(await sshGuest(key2, p2.ip, 'cat /run/cloud-init/result.json')) as { v1: { errors: string[] } };
    assert.deepEqual(result.v1.errors, []);
    // This boot's part of the log (the log is on the kept root too): no warnings about pod 2's seed
    // meeting what pod 1's instance left (network config, keys, hostname).
    const log = await sshGuest(key2, p2.ip, 'sudo cat /var/log/cloud-init.log');
    const boots = log.split(/^(?=.*Cloud-init v\. \S+ running 'init-local')/m).filter((b) => b.includes("running 'init-local'"));
    assert.equal(boots.length, 2, 'the log has pod 1\'s boot and pod 2\'s');
    const warnings = boots[1]!.split('\n').filter((l) => / - [A-Za-z0-9_.]+\[(WARNING|ERROR|CRITICAL)\]/.test(l));
    assert.deepEqual(warnings, [], `cloud-init logged warnings at pod 2's boot:\n${warnings.join('\n')}`);
  });
  await t.test('pod 2: the hostname is pod 2\'s (also in /etc/hostname)', async () => {
    assert.deepEqual((await sshGuest(key2, p2.ip, 'hostname; cat /etc/hostname')).trim().split('\n'), [p2.name, p2.name]);
  });
  await t.test('pod 2: the address is pod 2\'s (the new pod\'s network config), pod 1\'s is gone', async () => {
    const addr = await sshGuest(key2, p2.ip, 'ip -4 -o addr show dev eth0');
    assert.match(addr, new RegExp(` inet ${p2.ip.replaceAll('.', '\\.')}/24 `), addr);
    assert.doesNotMatch(addr, new RegExp(` inet ${p1.ip.replaceAll('.', '\\.')}/`), addr);
    const eni = await sshGuest(key2, p2.ip, 'cat /etc/network/interfaces.d/50-cloud-init');
    assert.match(eni, new RegExp(`^\\s*address ${p2.ip.replaceAll('.', '\\.')}/24$`, 'm'), eni);
    assert.doesNotMatch(eni, new RegExp(p1.ip.replaceAll('.', '\\.')), eni);
  });
  await t.test('pod 2: new SSH host keys (cloud-init regenerates them for a new instance)', async () => {
    const keys = await hostKeyFingerprints(p2.ip);
    assert.ok(keys.length > 0);
    assert.equal(keys.filter((k) => pod1HostKeys.includes(k)).length, 0, `host keys kept from pod 1: ${keys.join(' ')}`);
  });
  await t.test('pod 2: pod 2\'s key logs in; cloud-init only adds keys, so pod 1\'s key is still authorized too', async () => {
    assert.equal((await sshGuest(key2, p2.ip, 'id -un')).trim(), 'debian');
    const keys = (await sshGuest(key2, p2.ip, 'cat ~/.ssh/authorized_keys')).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    assert.ok(keys.includes(key2.publicKey), keys.join('\n'));
    assert.ok(keys.includes(key1.publicKey), `what holds with Debian 12's cloud-init: pod 1's key stays: ${keys.join('\n')}`);
    assert.equal((await sshGuest(key1, p2.ip, 'id -un')).trim(), 'debian', 'pod 1\'s key still logs in');
  });
  await t.test('pod 2 stopped and removed: nothing left; the device keeps its header', async () => {
    await stopAndRemove(p2);
    assertNothingLeft(p2, deviceOwner, imageDigest);
  });
});
