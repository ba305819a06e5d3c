/**
 * End to end with real cloud-init: the Debian 12 guest (test-guests/build-debian-cloud.sh, Debian's
 * 6.1 cloud kernel, which has no AHCI driver) boots in a pod through the real daemon and applies
 * vmlet's seed: hostname, VirtletSSHKeys (an SSH login from the host to the pod IP),
 * VirtletCloudInitUserData runcmd, the container env file, network-config v1, and cloud-init's own
 * status is done without errors.
 *
 * TCG makes a boot cost about a minute, so each pod boots once and is checked many ways:
 * - pod 1: a warm VM (adopted), SCSI root disk, NoCloud seed, static network-config (the default);
 * - pod 2: a cold VM (vmlet restarted without a warm pool), virtio-blk root disk, config drive,
 *   VirtletForceDHCPNetworkConfig.
 * Pod 2 runs on a daemon without warm VMs on purpose: every `vmlet serve` that starts on this host
 * deletes the warm netns it did not make (netd's deleteUnadoptedWarmNetns), so another test's
 * daemon starting meanwhile breaks a later warm claim on a machine shared with other tests.
 */
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startTestDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { waitFor, qemuPids, removeAllAndStop, deleteLink, clearStaleTestSubnet } from '../../helpers/e2e.js';
import { buildTestGuest, DEBIAN_GUEST_USER as GUEST_USER, makeSshKey, serveFiles, sshGuest, writeBridgeConflist, type SshKey } from '../../helpers/debian_guest.js';
import { ownDomains } from '../../helpers/own_domains.js';

const tag = randomBytes(3).toString('hex');
const bridge = `vci${tag}`;
const subnet = '198.18.130';
const GIB = 1024 * 1024 * 1024;
const DAEMON_ARGS = ['--kvm', 'off', '--vm-memory', '1Gi', '--vm-warm-pool', '1'];

let d: TestDaemon;
let images: { base: string; close: () => void } | undefined;
let imageUrl: string;
let key: SshKey;
let publicKey: string;
const timings: Record<string, number> = {};

before(async () => {
  clearStaleTestSubnet(subnet);
  await ensureLibvirtd();
  // The first run builds the image (a few minutes); later runs find it in the cache.
  const buildStart = Date.now();
  const image = buildTestGuest('build-debian-cloud.sh');
  timings['image build or cache lookup'] = Date.now() - buildStart;
  images = await serveFiles({ '/debian-cloud.qcow2': image });
  imageUrl = `${images.base}/debian-cloud.qcow2`;

  d = await startTestDaemon({ args: DAEMON_ARGS });
  key = makeSshKey(join(d.dir, 'id_ed25519'), `vmlet-e2e-${tag}`);
  publicKey = key.publicKey;
  writeBridgeConflist(d, '10-cloud-init.conflist', { name: `vmlet-ci-${tag}`, bridge, subnet });
});

after(async () => {
  await removeAllAndStop(d);
  images?.close();
  deleteLink(bridge);
  if (Object.keys(timings).length > 0) console.log(`# cloud-init guest timings (ms): ${JSON.stringify(timings)}`);
});

/** Runs `command` in the guest over SSH as the default user (cloud-init gives it VirtletSSHKeys), with the test's key. */
function ssh(ip: string, command: string, timeoutMs?: number): Promise<string> {
  return sshGuest(key, ip, command, timeoutMs);
}

interface Pod {
  name: string;
  annotations: Record<string, string>;
  memoryBytes: number;
  env: { key: string; value: string }[];
}

interface RunningPod {
  sandboxId: string;
  id: string;
  ip: string;
  domainXml: string;
  logPath: string;
  netns: string;
}

async function startPod(pod: Pod): Promise<RunningPod> {
  const logDir = join(d.dir, 'pod-logs', pod.name);
  mkdirSync(logDir, { recursive: true });
  const podConfig = {
    metadata: { name: pod.name, namespace: 'default', uid: `uid-${pod.name}-${tag}`, attempt: 0 },
    hostname: pod.name,
    log_directory: logDir,
    annotations: pod.annotations,
    linux: {},
  };
  const { pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config: podConfig });
  const sandbox = await d.runtime.PodSandboxStatus!({ pod_sandbox_id: sandboxId, verbose: true });
  const ip = sandbox.status.network.ip as string;
  const netns = JSON.parse(sandbox.info.info).netnsPath as string;
  const { container_id: id } = await d.runtime.CreateContainer!({
    pod_sandbox_id: sandboxId,
    config: {
      metadata: { name: 'vm', attempt: 0 }, image: { image: imageUrl }, log_path: 'vm.log', envs: pod.env,
      linux: { resources: { memory_limit_in_bytes: String(pod.memoryBytes) } },
    },
    sandbox_config: podConfig,
  });
  const domainXml = JSON.parse((await d.runtime.ContainerStatus!({ container_id: id, verbose: true })).info.info).domainXml as string;
  const started = Date.now();
  await d.runtime.StartContainer!({ container_id: id }, { deadlineMs: 180_000 });
  // The guest is up for users once sshd takes the test's key.
  await waitFor(`an SSH login to ${pod.name} at ${ip}`, 600_000, () => ssh(ip, 'true', 20_000).then(() => true, () => undefined));
  timings[`${pod.name}: StartContainer to SSH login`] = Date.now() - started;
  return { sandboxId, id, ip, domainXml, logPath: join(logDir, 'vm.log'), netns };
}

/** cloud-init's own verdict, once it has finished every stage. */
async function checkCloudInitDone(t: TestContext, vm: RunningPod, datasource: RegExp): Promise<void> {
  await t.test('cloud-init status is done, without errors', async () => {
    const waited = Date.now();
    const status = await ssh(vm.ip, 'cloud-init status --long --wait', 600_000).catch((err: { stdout?: string; message: string }) => {
      throw new Error(`cloud-init status failed: ${err.stdout ?? ''} ${err.message}`);
    });
    timings[`${vm.ip}: cloud-init done after SSH`] = Date.now() - waited;
    assert.match(status, /^status: done$/m, status);
    assert.match(status, datasource, status);
    // result.json lists every error of every stage (a module that failed, a schema problem).
    const result = JSON.parse(await ssh(vm.ip, 'cat /run/cloud-init/result.json')) as { v1: { errors: string[]; datasource: string } };
    assert.deepEqual(result.v1.errors, []);
    // Schema warnings about vmlet's documents land in the log as WARNING lines.
    const warnings = await ssh(vm.ip, "sudo grep -E ' - [A-Za-z0-9_.]+\\[(WARNING|ERROR|CRITICAL)\\]' /var/log/cloud-init.log || true");
    assert.equal(warnings.trim(), '', `cloud-init logged warnings:\n${warnings}`);
  });
}

async function stopAndRemove(vm: RunningPod): Promise<void> {
  const stopStart = Date.now();
  await d.runtime.StopContainer!({ container_id: vm.id, timeout: '60' }, { deadlineMs: 120_000 });
  const stopped = (await d.runtime.ContainerStatus!({ container_id: vm.id })).status;
  assert.equal(stopped.state, 'CONTAINER_EXITED');
  assert.equal(stopped.exit_code ?? 0, 0, `clean ACPI power-off (${stopped.reason}: ${stopped.message})`);
  assert.ok(Date.now() - stopStart < 60_000, `StopContainer took ${Date.now() - stopStart} ms`);
  timings[`${vm.ip}: StopContainer (ACPI power-off)`] = Date.now() - stopStart;
  await d.runtime.RemoveContainer!({ container_id: vm.id });
  await d.runtime.StopPodSandbox!({ pod_sandbox_id: vm.sandboxId });
  await d.runtime.RemovePodSandbox!({ pod_sandbox_id: vm.sandboxId });
  const domains = execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'list', '--all', '--name'], { encoding: 'utf8' });
  assert.ok(!domains.includes(vm.sandboxId.slice(0, 12)) && !domains.includes(vm.id.slice(0, 12)), `domain left: ${domains}`);
  assert.equal(existsSync(vm.netns), false, 'netns left');
}

test('cloud-init guest, warm VM: NoCloud seed on virtio-scsi, hostname, SSH keys and login, runcmd, env file, static network-config', { timeout: 1_500_000 }, async (t) => {
  const suiteStart = Date.now();
  const pullStart = Date.now();
  await d.image.PullImage!({ image: { image: imageUrl } }, { deadlineMs: 300_000 });
  timings['PullImage'] = Date.now() - pullStart;
  // Idle (claimable) only once started paused, which the daemon logs; the domain exists earlier.
  await waitFor('a warm VM', 180_000, () => (d.output().includes('warm VM ready') && warmDomains().length === 1) || undefined);
  const warmDomain = warmDomains()[0]!;
  const marker = `runcmd-${tag}`;
  const otherKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm0H0TpLkAqWfL8ucdHDa4VY4qfZlDqFK5eq0S7mAmq second-key@vmlet-e2e';
  const vm = await startPod({
    name: `ci-static-${tag}`,
    memoryBytes: GIB,
    env: [{ key: 'GREETING', value: 'hello from vmlet' }],
    annotations: {
      VirtletSSHKeys: `${publicKey}\n${otherKey}`,
      VirtletCloudInitUserData: `runcmd:\n  - [sh, -c, "echo ${marker} > /var/tmp/vmlet-runcmd"]\n`,
    },
  });
  assert.match(vm.ip, /^198\.18\.130\.\d+$/);

  await t.test('the pod adopted the warm VM; the seed is a SCSI CD-ROM, the root disk SCSI', () => {
    assert.match(vm.domainXml, new RegExp(`<name>${warmDomain}</name>`));
    assert.doesNotMatch(vm.domainXml, /bus=["']sata["']/);
  });
  await checkCloudInitDone(t, vm, /DataSourceNoCloud \[seed=\/dev\/sr0\]/);
  await t.test('the guest sees its seed on sr0 (virtio-scsi) and runs Debian 12 on the 6.1 cloud kernel', async () => {
    const out = await ssh(vm.ip, 'uname -r; findmnt -n -o SOURCE /; readlink -f /sys/block/sr0/device/driver; . /etc/os-release; echo $VERSION_ID');
    const [kernel, rootDev, srDriver, version] = out.trim().split('\n');
    assert.match(kernel!, /^6\.1\.\d+-\d+-cloud-amd64$/);
    assert.equal(rootDev, '/dev/sda2');
    assert.match(srDriver!, /\/sr$/);
    assert.equal(version, '12');
  });
  await t.test('hostname from the pod', async () => {
    assert.equal((await ssh(vm.ip, 'hostname')).trim(), `ci-static-${tag}`);
  });
  await t.test('VirtletSSHKeys are the default user\'s authorized keys', async () => {
    const keys = (await ssh(vm.ip, 'cat ~/.ssh/authorized_keys')).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    assert.ok(keys.includes(publicKey), keys.join('\n'));
    assert.ok(keys.includes(otherKey), keys.join('\n'));
    assert.equal((await ssh(vm.ip, 'id -un')).trim(), GUEST_USER);
  });
  await t.test('VirtletCloudInitUserData runcmd ran', async () => {
    assert.equal((await ssh(vm.ip, 'cat /var/tmp/vmlet-runcmd')).trim(), marker);
  });
  await t.test('the container env is in /etc/cloud/environment (0600)', async () => {
    const out = await ssh(vm.ip, 'sudo stat -c %a /etc/cloud/environment && sudo cat /etc/cloud/environment');
    assert.match(out, /^600\n/);
    assert.match(out, /GREETING=["']?hello from vmlet["']?/);
  });
  await t.test('network-config v1 static: the pod IP, set statically, and the default route', async () => {
    const eni = await ssh(vm.ip, 'cat /etc/network/interfaces.d/50-cloud-init');
    assert.match(eni, /^iface eth0 inet static$/m, eni);
    assert.match(eni, new RegExp(`^\\s*address ${vm.ip.replace(/\./g, '\\.')}/24$`, 'm'), eni);
    const addr = await ssh(vm.ip, 'ip -4 -o addr show dev eth0');
    assert.match(addr, new RegExp(` inet ${vm.ip.replace(/\./g, '\\.')}/24 `));
    assert.doesNotMatch(addr, /dynamic/, 'a static address has no lease lifetime');
    assert.match(await ssh(vm.ip, 'ip -4 route show default'), new RegExp(`^default via ${subnet.replace(/\./g, '\\.')}\\.1 dev eth0`, 'm'));
  });
  await t.test('StopContainer powers the guest off through ACPI; nothing of the pod is left', async () => {
    await stopAndRemove(vm);
  });
  timings['pod 1 total (pull, boot, checks, stop)'] = Date.now() - suiteStart;
  await t.test('after vmlet stops: no warm VM, domain, QEMU, netns, QMP socket or lease is left', async () => {
    await checkNothingLeftAfterStop();
  });
});

async function checkNothingLeftAfterStop(): Promise<void> {
  assert.equal(await d.stop(), 0);
  assert.deepEqual(readdirSync(join(d.stateDir, 'vms')), []);
  assert.deepEqual(readdirSync(join(d.stateDir, 'qmp')), [], 'no warm VM QMP socket left');
  // Other tests' VMs may run on this machine: only QEMUs with files of this daemon count.
  assert.deepEqual(qemuPids().filter((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(d.dir)), []);
  assert.deepEqual(readdirSync(join(d.dir, 'ipam', `vmlet-ci-${tag}`)).filter((f) => /^\d/.test(f)), [], 'IPAM lease left');
}

test('cloud-init guest, cold VM: config drive, virtio-blk root disk, VirtletForceDHCPNetworkConfig', { timeout: 1_500_000 }, async (t) => {
  // vmlet again on the same state directory (the image stays pulled), without a warm pool.
  await d.stop();
  d = await startTestDaemon({ dir: d.dir, args: ['--kvm', 'off', '--vm-memory', '1Gi'] });
  const podStart = Date.now();
  await d.image.PullImage!({ image: { image: imageUrl } }, { deadlineMs: 300_000 });
  const vm = await startPod({
    name: `ci-dhcp-${tag}`,
    memoryBytes: GIB,
    env: [],
    annotations: {
      VirtletSSHKeys: publicKey,
      VirtletForceDHCPNetworkConfig: 'true',
      VirtletDiskDriver: 'virtio',
      VirtletCloudInitImageType: 'configdrive',
    },
  });
  assert.match(vm.ip, /^198\.18\.130\.\d+$/);

  await t.test('a cold VM: virtio-blk root disk, the seed on virtio-scsi', () => {
    assert.doesNotMatch(vm.domainXml, /<name>vmlet-warm-/);
    assert.match(vm.domainXml, /<target dev=["']vda["'] bus=["']virtio["']\/>/);
    assert.doesNotMatch(vm.domainXml, /bus=["']sata["']/);
  });
  await checkCloudInitDone(t, vm, /DataSourceConfigDrive \[.*source=\/dev\/sr0\]/);
  await t.test('root on virtio-blk, hostname from the pod, the key logs in', async () => {
    const out = await ssh(vm.ip, 'findmnt -n -o SOURCE /; hostname; id -un');
    assert.deepEqual(out.trim().split('\n'), ['/dev/vda2', `ci-dhcp-${tag}`, GUEST_USER]);
  });
  await t.test('network config says DHCP, and the guest holds the pod IP on a lease', async () => {
    const eni = await ssh(vm.ip, 'cat /etc/network/interfaces.d/50-cloud-init');
    assert.match(eni, /^iface eth0 inet dhcp$/m, eni);
    assert.doesNotMatch(eni, /inet static/, eni);
    const addr = await ssh(vm.ip, 'ip -4 -o addr show dev eth0');
    assert.match(addr, new RegExp(` inet ${vm.ip.replace(/\./g, '\\.')}/24 .*dynamic`), addr);
    assert.match(await ssh(vm.ip, 'ip -4 route show default'), new RegExp(`^default via ${subnet.replace(/\./g, '\\.')}\\.1 dev eth0`, 'm'));
  });
  await t.test('StopContainer powers the guest off through ACPI; nothing of the pod is left', async () => {
    await stopAndRemove(vm);
  });
  timings['pod 2 total (boot, checks, stop)'] = Date.now() - podStart;

  await t.test('after vmlet stops: no domain, QEMU, netns or lease is left', async () => {
    await checkNothingLeftAfterStop();
  });
});

/** This test daemon's warm domains: other tests' vmlets, in the parallel lanes of npm test, make their own. */
function warmDomains(): string[] {
  return ownDomains(d.stateDir, 'vmlet-warm-');
}
