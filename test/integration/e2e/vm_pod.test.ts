/**
 * End to end: a real VM boots in a pod and answers on its pod IP.
 * The test guest (test-guests/build-busybox.sh) is served over HTTP on 127.0.0.1, pulled through the
 * CRI, and run under TCG in a sandbox on a real CNI bridge network in 198.18.0.0/15. The host
 * side of that network is the bridge plugin's gateway address, so the host can reach the guest.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync, mkdirSync, renameSync } from 'node:fs';
import { request, type Server } from 'node:http';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startTestDaemon, grpcCode, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { ownerIdFor } from '../../../src/store/owner.js';
import { isOwnWarmNetns } from '../../../src/network/names.js';
import { serveTestGuest, waitFor, criLines, qemuPids, removeAllAndStop, deleteLink, clearStaleTestSubnet } from '../../helpers/e2e.js';
import { assertQemuUnprivileged } from '../../helpers/qemu_user.js';
import { ownDomains } from '../../helpers/own_domains.js';

const tag = randomBytes(3).toString('hex');
const bridge = `vte${tag}`;
const subnet = '198.18.91';
let d: TestDaemon;
let imageServer: Server;
let imageUrl: string;
let dir: string;
const DAEMON_ARGS = ['--kvm', 'off', '--vm-memory', '256Mi', '--vm-warm-pool', '1'];

before(async () => {
  clearStaleTestSubnet(subnet);
  await ensureLibvirtd();
  ({ url: imageUrl, server: imageServer } = await serveTestGuest());
  // With one warm VM, the product's default path: the pod adopts a VM libvirt started in advance.
  d = await startTestDaemon({ args: DAEMON_ARGS });
  dir = d.dir;
  writeFileSync(join(d.cniConfDir, '10-e2e.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-e2e-${tag}`,
    plugins: [{
      type: 'bridge', bridge, isGateway: true, ipMasq: false,
      ipam: { type: 'host-local', dataDir: join(dir, 'ipam'), ranges: [[{ subnet: `${subnet}.0/24`, gateway: `${subnet}.1` }]], routes: [{ dst: '198.18.0.0/15' }] },
    }],
  }));
});

after(async () => {
  await removeAllAndStop(d);
  imageServer?.close();
  deleteLink(bridge);
});

function httpGet(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: '/', timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

test('a VM boots in a pod, gets its pod IP by DHCP, answers on it, survives a vmlet restart, powers off on stop, leaves nothing', { timeout: 900_000 }, async () => {
  const logDir = join(dir, 'pod-logs');
  mkdirSync(logDir, { recursive: true });
  const pulled = await d.image.PullImage!({ image: { image: imageUrl } });
  const podConfig = {
    metadata: { name: 'e2e', namespace: 'default', uid: `uid-e2e-${tag}`, attempt: 0 },
    hostname: 'e2e-guest',
    log_directory: logDir,
    linux: {},
  };
  await waitFor('a warm VM', 120_000, () => warmDomains().length === 1 || undefined);
  // Defined is not yet idle in the pool: a claim needs it started (paused), which the daemon logs.
  await waitFor('the warm VM started', 120_000, () => d.output().includes('"msg":"warm VM ready"') || undefined);
  const warmDomain = warmDomains()[0]!;
  const { pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config: podConfig });
  const podIp = (await d.runtime.PodSandboxStatus!({ pod_sandbox_id: sandboxId })).status.network.ip;
  assert.match(podIp, new RegExp(`^${subnet.replace(/\./g, '\\.')}\\.\\d+$`));

  const { container_id: id } = await d.runtime.CreateContainer!({
    pod_sandbox_id: sandboxId,
    config: { metadata: { name: 'vm', attempt: 0 }, image: { image: imageUrl }, log_path: 'vm/0.log', envs: [{ key: 'GREETING', value: 'hello' }], linux: { resources: { memory_limit_in_bytes: String(256 * 1024 * 1024) } } },
    sandbox_config: podConfig,
  });
  // One VM per pod.
  await assert.rejects(d.runtime.CreateContainer!({ pod_sandbox_id: sandboxId, config: { metadata: { name: 'vm2' }, image: { image: imageUrl } } }), /one VM/);

  // The container's VM is the warm one, adopted, with its disks and NIC plugged in.
  const created = JSON.parse((await d.runtime.ContainerStatus!({ container_id: id, verbose: true })).info.info).domainXml as string;
  assert.match(created, new RegExp(`<name>${warmDomain}</name>`));

  await d.runtime.StartContainer!({ container_id: id }, { deadlineMs: 180_000 });
  const status = await d.runtime.ContainerStatus!({ container_id: id });
  assert.equal(status.status.state, 'CONTAINER_RUNNING');
  assert.equal(status.status.image_ref, pulled.image_ref);
  const logPath = join(logDir, 'vm', '0.log');
  assert.equal(status.status.log_path, logPath);

  // The guest reports its DHCP address on the console: exactly the pod IP.
  const ipLine = await waitFor('the guest DHCP address on the console', 240_000, () =>
    criLines(logPath).find((l) => l.text.startsWith('VMLET-GUEST ip eth0 ')));
  assert.equal(ipLine.text, `VMLET-GUEST ip eth0 ${podIp}/24`);
  await waitFor('guest ready', 120_000, () => criLines(logPath).find((l) => l.text === 'VMLET-GUEST ready'));
  const lines = criLines(logPath).map((l) => l.text);
  assert.ok(lines.includes('VMLET-GUEST hostname e2e-guest'), 'the seed hostname arrived');
  assert.ok(lines.includes(`VMLET-GUEST instance-id ${id}`), 'the seed instance-id arrived');

  // The host reaches the guest's TCP responder at the pod IP.
  assert.equal((await httpGet(podIp, 8080)).trim(), 'vmlet-guest e2e-guest');

  // QEMU runs as the vmlet-qemu user: no root-only file is readable with its ids; its overlay is.
  assertQemuUnprivileged(warmDomain, join(d.stateDir, 'vms', id, 'root.qcow2'));

  // Stats are real; a second ListContainerStats (crictl stats calls it twice) carries a CPU rate.
  const stats = await d.runtime.ContainerStats!({ container_id: id });
  assert.ok(BigInt(stats.stats.cpu.usage_core_nano_seconds.value) > 0n);
  assert.ok(BigInt(stats.stats.writable_layer.used_bytes.value) > 0n);
  // crictl stats calls ListContainerStats twice: the second answer's usage_nano_cores is the CPU
  // used between the two samples per second (proto3 sends a rate of 0 as an empty value).
  const sample = async () => {
    const all = await d.runtime.ListContainerStats!({ filter: {} });
    return all.stats.find((x: { attributes: { id: string } }) => x.attributes.id === id).cpu;
  };
  const first = await sample();
  await new Promise((r) => setTimeout(r, 500));
  const second = await sample();
  const cpuDelta = BigInt(second.usage_core_nano_seconds.value) - BigInt(first.usage_core_nano_seconds.value);
  const timeDelta = BigInt(second.timestamp) - BigInt(first.timestamp);
  assert.ok(timeDelta > 0n && cpuDelta >= 0n);
  assert.equal(BigInt(second.usage_nano_cores?.value ?? '0'), (cpuDelta * 1_000_000_000n) / timeDelta);

  // UpdateContainerResources changes the running VM, and ContainerStatus reports what is in effect.
  await d.runtime.UpdateContainerResources!({ container_id: id, linux: { cpu_shares: '768', cpu_period: '100000', cpu_quota: '60000' } });
  const updated = (await d.runtime.ContainerStatus!({ container_id: id })).status.resources.linux;
  assert.equal(updated.cpu_shares, '768');
  assert.equal(updated.cpu_quota, '60000');
  assert.equal(updated.memory_limit_in_bytes, String(256 * 1024 * 1024));
  assert.equal(updated.memory_swap_limit_in_bytes, String(256 * 1024 * 1024));
  const xml = JSON.parse((await d.runtime.ContainerStatus!({ container_id: id, verbose: true })).info.info).domainXml as string;
  assert.match(xml, /<shares>768<\/shares>/);
  assert.match(xml, /<quota>60000<\/quota>/);
  assert.equal(await grpcCode(d.runtime.UpdateContainerResources!({ container_id: id, linux: { memory_limit_in_bytes: String(1024 * 1024 * 1024) } })), 9 /* FAILED_PRECONDITION */);

  // Restart vmlet: the VM keeps running and its status stays right; the console keeps flowing.
  assert.equal(await d.stop(), 0);
  assert.equal((await httpGet(podIp, 8080)).trim(), 'vmlet-guest e2e-guest', 'VM serves while vmlet is down');
  d = await startTestDaemon({ dir, args: DAEMON_ARGS });
  assert.equal((await d.runtime.ContainerStatus!({ container_id: id })).status.state, 'CONTAINER_RUNNING');
  assert.equal((await d.runtime.PodSandboxStatus!({ pod_sandbox_id: sandboxId })).status.network.ip, podIp);

  // kubelet rotates the log: rename it, ReopenContainerLog, and new output lands in a new file.
  renameSync(logPath, `${logPath}.1`);
  await d.runtime.ReopenContainerLog!({ container_id: id });
  assert.ok(existsSync(logPath), 'ReopenContainerLog created the log file again');

  // StopContainer powers the guest off through ACPI within the timeout.
  const before = Date.now();
  await d.runtime.StopContainer!({ container_id: id, timeout: '60' }, { deadlineMs: 120_000 });
  const stopped = await d.runtime.ContainerStatus!({ container_id: id });
  assert.equal(stopped.status.state, 'CONTAINER_EXITED');
  assert.equal(stopped.status.exit_code ?? 0, 0, `clean ACPI power-off (${stopped.status.reason}: ${stopped.status.message})`);
  assert.ok(Date.now() - before < 60_000);
  await waitFor('the guest shutdown line in the reopened log', 10_000, () => criLines(logPath).find((l) => l.text === 'VMLET-GUEST shutdown'));
  assert.ok(criLines(`${logPath}.1`).some((l) => l.text === 'VMLET-GUEST ready'), 'the rotated file keeps the earlier output');

  // Remove everything: no domain, overlay, seed, TAP, bridge, netns, lease or process is left.
  const netns = JSON.parse((await d.runtime.PodSandboxStatus!({ pod_sandbox_id: sandboxId, verbose: true })).info.info).netnsPath as string;
  await d.runtime.RemoveContainer!({ container_id: id });
  await d.runtime.StopPodSandbox!({ pod_sandbox_id: sandboxId });
  await d.runtime.RemovePodSandbox!({ pod_sandbox_id: sandboxId });
  const domains = execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'list', '--all', '--name'], { encoding: 'utf8' });
  assert.ok(!domains.includes(sandboxId.slice(0, 12)) && !domains.includes(warmDomain), `domain left: ${domains}`);
  assert.equal(existsSync(netns), false);
  assert.deepEqual(readdirSync(join(dir, 'ipam', `vmlet-e2e-${tag}`)).filter((f) => /^\d/.test(f)), []);
  // What is left is the pool's next warm VM; stopping vmlet discards it with its netns.
  assert.equal(await d.stop(), 0);
  assert.deepEqual(warmDomains(), []);
  assert.deepEqual(readdirSync(join(d.stateDir, 'vms')), []);
  assert.deepEqual(readdirSync(join(d.stateDir, 'qmp')), [], 'no warm VM QMP socket left');
  // This daemon's (its owner id): other vmlet instances on the host keep warm netns of their own.
  assert.deepEqual(readdirSync('/run/netns').filter((n) => isOwnWarmNetns(n, ownerIdFor(d.stateDir))), []);
  assert.deepEqual(qemuPids(d.stateDir), []);
  d = await startTestDaemon({ dir, args: ['--kvm', 'off', '--vm-memory', '256Mi'] });
});

/** This test daemon's warm domains: other vmlets on the same libvirtd may have their own. */
function warmDomains(): string[] {
  return ownDomains(d.stateDir, 'vmlet-warm-');
}

