/**
 * End to end, dual stack: a conflist of Debian's bridge plugin with host-local ranges of both
 * families (198.18.233.0/24 and a random ULA /64) gives the pod an IPv4 and an IPv6 address; the
 * Debian cloud-init guest (test-guests/build-debian-cloud.sh; the busybox guest runs no DHCPv6
 * client) boots with VirtletForceDHCPNetworkConfig, so ifupdown runs dhclient for both families:
 * DHCPv4 from vmlet's server, DHCPv6 (stateful, IA_NA) from its DHCPv6 server, the on-link prefix
 * and the default route from the pod bridge's router advertisements. The host reaches the guest on
 * both addresses (SSH), the guest reaches an off-link host address through its IPv6 default
 * route, and nothing is left after Stop/Remove. One boot (a cold VM; TCG makes a boot cost a
 * minute or more).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { randomBytes, randomInt } from 'node:crypto';
import { startTestDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { waitFor, qemuPids, removeAllAndStop, deleteLink, clearStaleTestSubnet } from '../../helpers/e2e.js';
import { buildTestGuest, makeSshKey, serveFiles, sshGuest, writeBridgeConflist, type SshKey } from '../../helpers/debian_guest.js';

const tag = randomBytes(3).toString('hex');
const bridge = `vds${tag}`;
const subnet = '198.18.233';
// Groups without leading zeros, so they read back from the kernel as written.
const ula = `fd${tag.slice(0, 2)}:${randomInt(0x1000, 0x10000).toString(16)}:${randomInt(0x1000, 0x10000).toString(16)}`;
const POD6 = `${ula}:1::`;
const GATEWAY6 = `${ula}:1::1`;
const OFF_LINK6 = `${ula}:2::1`;
/** An IPv6 DNS server for the pod (nothing answers on it; the guest only has to be told of it). */
const DNS6 = `${ula}:53::53`;
const GIB = 1024 * 1024 * 1024;
const timings: Record<string, number> = {};

let d: TestDaemon;
let images: { base: string; close: () => void } | undefined;
let imageUrl: string;
let key: SshKey;
let publicKey: string;

before(async () => {
  clearStaleTestSubnet(subnet);
  await ensureLibvirtd();
  images = await serveFiles({ '/debian-cloud.qcow2': buildTestGuest('build-debian-cloud.sh') });
  imageUrl = `${images.base}/debian-cloud.qcow2`;
  // No warm pool: a refill would boot a second VM under TCG while this one is checked.
  d = await startTestDaemon({ args: ['--kvm', 'off', '--vm-memory', '1Gi'] });
  key = makeSshKey(join(d.dir, 'id_ed25519'), `vmlet-e2e-${tag}`);
  publicKey = key.publicKey;
  writeBridgeConflist(d, '10-dual-stack.conflist', { name: `vmlet-ds-${tag}`, bridge, subnet, ipv6: { subnet: `${POD6}/64`, gateway: GATEWAY6 } });
});

after(async () => {
  await removeAllAndStop(d);
  images?.close();
  deleteLink(bridge);
  if (Object.keys(timings).length > 0) console.log(`# dual-stack guest timings (ms): ${JSON.stringify(timings)}`);
});

function ssh(host: string, command: string, timeoutMs?: number): Promise<string> {
  return sshGuest(key, host, command, timeoutMs);
}

test('dual stack: the guest gets both families by DHCP, DHCPv6 and router advertisements, and is reachable on both; nothing is left', { timeout: 1_500_000 }, async (t) => {
  const started = Date.now();
  await d.image.PullImage!({ image: { image: imageUrl } }, { deadlineMs: 300_000 });
  const name = `ds-${tag}`;
  const logDir = join(d.dir, 'pod-logs');
  mkdirSync(logDir, { recursive: true });
  const podConfig = {
    metadata: { name, namespace: 'default', uid: `uid-${name}`, attempt: 0 },
    hostname: name,
    log_directory: logDir,
    dns_config: { servers: [`${subnet}.1`, DNS6], searches: ['ds.example'], options: [] },
    annotations: { VirtletSSHKeys: publicKey, VirtletForceDHCPNetworkConfig: 'true' },
    linux: {},
  };
  const { pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config: podConfig });
  const sandbox = await d.runtime.PodSandboxStatus!({ pod_sandbox_id: sandboxId, verbose: true });
  const ip4 = sandbox.status.network.ip as string;
  const ip6 = (sandbox.status.network.additional_ips as { ip: string }[]).map((a) => a.ip).find((a) => a.includes(':'))!;
  const netns = JSON.parse(sandbox.info.info).netnsPath as string;
  assert.match(ip4, /^198\.18\.233\.\d+$/);
  assert.ok(ip6?.startsWith(`${ula}:1:`), `IPv6 pod IP: ${JSON.stringify(sandbox.status.network)}`);
  const { container_id: id } = await d.runtime.CreateContainer!({
    pod_sandbox_id: sandboxId,
    config: { metadata: { name: 'vm', attempt: 0 }, image: { image: imageUrl }, log_path: 'vm.log', linux: { resources: { memory_limit_in_bytes: String(GIB) } } },
    sandbox_config: podConfig,
  });
  await d.runtime.StartContainer!({ container_id: id }, { deadlineMs: 180_000 });
  await waitFor(`an SSH login at ${ip4}`, 600_000, () => ssh(ip4, 'true', 20_000).then(() => true, () => undefined)).catch((err: unknown) => {
    // The daemon's directory goes with the cleanup: keep the guest's console tail in the output.
    const log = join(logDir, 'vm.log');
    if (existsSync(log)) console.log(`# guest console tail:\n${readFileSync(log, 'utf8').split('\n').slice(-40).join('\n')}`);
    throw err;
  });
  timings['StartContainer to SSH login over IPv4'] = Date.now() - started;

  await t.test('the guest holds its IPv6 address on a DHCPv6 lease, the prefix on-link and its default route from the bridge', async () => {
    // dhclient -6 may still be soliciting when sshd is up on IPv4.
    const addr = await waitFor('the DHCPv6 address', 120_000, async () => {
      const out = await ssh(ip4, 'ip -6 -o addr show dev eth0 scope global');
      return out.includes(`inet6 ${ip6}/`) ? out : undefined;
    });
    assert.match(addr, new RegExp(`inet6 ${ip6}/128 .*dynamic`), addr);
    const routes = await waitFor('the IPv6 default route', 60_000, async () => {
      const out = await ssh(ip4, 'ip -6 route show');
      return /^default via fe80::\S+ dev eth0 proto ra/m.test(out) ? out : undefined;
    });
    assert.match(routes, new RegExp(`^${POD6}/64 dev eth0 proto (kernel|ra) .*expires`, 'm'), routes);
    // The address came by DHCPv6 (no SLAAC address beside it) with the pod's IPv6 DNS server.
    assert.equal(addr.trim().split('\n').length, 1, `one global address only: ${addr}`);
    const lease = await ssh(ip4, 'sudo cat /var/lib/dhcp/dhclient6.eth0.leases');
    assert.match(lease, new RegExp(`iaaddr ${ip6} `), lease);
    assert.match(lease, new RegExp(`option dhcp6.name-servers ${DNS6};`), lease);
  });
  await t.test('the host reaches the guest on both families', async () => {
    assert.equal((await ssh(ip6, 'hostname')).trim(), name);
    assert.equal((await ssh(ip4, 'hostname')).trim(), name);
  });
  await t.test('the guest reaches an off-link IPv6 address through its default route (the pod netns routes it to the gateway)', async () => {
    // A TCP listener on a host address outside the pod's /64: the guest has no route to it but
    // its default one. (The Debian guest has no ping; bash's /dev/tcp makes the connection.)
    execFileSync('ip', ['address', 'add', `${OFF_LINK6}/128`, 'dev', bridge, 'nodad']);
    const greeting = `vmlet-host-${tag}`;
    const server = createTcpServer((socket) => socket.end(`${greeting}\n`));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, OFF_LINK6, () => resolve());
    });
    try {
      const port = (server.address() as AddressInfo).port;
      assert.match(await ssh(ip4, `ip -6 route get ${OFF_LINK6}`), / via fe80::\S+ dev eth0 /, 'through the default route to the bridge');
      const out = await ssh(ip4, `timeout 20 bash -c 'cat < /dev/tcp/${OFF_LINK6}/${port}'`);
      assert.equal(out.trim(), greeting);
    } finally {
      server.close();
    }
  });
  await t.test('StopContainer and Remove leave no domain, netns or lease', async () => {
    await d.runtime.StopContainer!({ container_id: id, timeout: '60' }, { deadlineMs: 120_000 });
    await d.runtime.RemoveContainer!({ container_id: id });
    await d.runtime.StopPodSandbox!({ pod_sandbox_id: sandboxId });
    await d.runtime.RemovePodSandbox!({ pod_sandbox_id: sandboxId });
    assert.equal(existsSync(netns), false, 'netns left');
    const domains = execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'list', '--all', '--name'], { encoding: 'utf8' });
    assert.ok(!domains.includes(sandboxId.slice(0, 12)) && !domains.includes(id.slice(0, 12)), `domain left: ${domains}`);
    assert.equal(await d.stop(), 0);
    assert.deepEqual(qemuPids().filter((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(d.dir)), []);
    const ipam = join(d.dir, 'ipam', `vmlet-ds-${tag}`);
    assert.deepEqual(readdirSync(ipam).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip')), [], 'IPAM lease left');
  });
  timings['whole pod (pull, boot, checks, stop)'] = Date.now() - started;
});
