/**
 * End to end with the masquerade binding (pod annotation vmlet.io/network-binding: masquerade):
 * the Debian cloud-init guest (test-guests/build-debian-cloud.sh; the busybox guest has no way to
 * open a connection outwards on demand) boots behind NAT in its pod netns, on a dual-stack
 * conflist (198.19.54.0/24 and a random ULA /64), one boot shared by every check:
 * - the host reaches the guest's sshd (a declared container port) through the pod IP, and
 *   through the pod's IPv6 address (NAT66);
 * - the guest has the internal addresses 10.0.2.2/24 and fd10:0:2::2/120 (static network-config)
 *   and its default routes via 10.0.2.1 and fd10:0:2::1;
 * - the guest reaches a TCP responder on the host over both families, which sees the pod's
 *   address of that family as the source;
 * - the NAT tables (ip and ip6) in the pod netns carry the owner id; the veth keeps the pod IPs;
 * - after Stop/Remove: no netns, no NAT table, no host-side veth, no domain, no QEMU.
 * Cold VM (no warm pool): another test's daemon starting on the shared host deletes warm netns it
 * did not make (see cloud_init_guest.test.ts); the warm claim path is in test/unit/netd/masquerade.test.ts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { randomBytes, randomInt } from 'node:crypto';
import { startTestDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { waitFor, qemuPids, removeAllAndStop, deleteLink, clearStaleTestSubnet } from '../../helpers/e2e.js';
import { buildTestGuest, makeSshKey, serveFiles, sshGuest, writeBridgeConflist, type SshKey } from '../../helpers/debian_guest.js';
import { ownerIdFor } from '../../../src/store/owner.js';

const tag = randomBytes(3).toString('hex');
const bridge = `vmq${tag}`;
const subnet = '198.19.54';
// A random ULA /48 (RFC 4193), the pod's /64 in it. Groups without leading zeros, so they read back from the kernel as written.
const ula = `fd${tag.slice(0, 2)}:${randomInt(0x1000, 0x10000).toString(16)}:${randomInt(0x1000, 0x10000).toString(16)}`;
const POD6 = `${ula}:1::`;
const GATEWAY6 = `${ula}:1::1`;
const timings: Record<string, number> = {};

let d: TestDaemon;
let images: { base: string; close: () => void } | undefined;
let responder: Server | undefined;
let responderPort: number;
let imageUrl: string;
let key: SshKey;

before(async () => {
  clearStaleTestSubnet(subnet);
  await ensureLibvirtd();
  images = await serveFiles({ '/debian-cloud.qcow2': buildTestGuest('build-debian-cloud.sh') });
  imageUrl = `${images.base}/debian-cloud.qcow2`;
  // The host's TCP responder the guest calls: it answers with the source address it saw.
  responder = createServer((req, res) => res.end(`seen ${req.socket.remoteAddress}\n`));
  // Both families: an IPv4 peer shows as ::ffff:a.b.c.d.
  await new Promise<void>((r) => responder!.listen(0, '::', () => r()));
  responderPort = (responder.address() as AddressInfo).port;

  d = await startTestDaemon({ args: ['--kvm', 'off', '--vm-memory', '1Gi', '--vm-warm-pool', '0'] });
  key = makeSshKey(join(d.dir, 'id_ed25519'), `vmlet-masq-${tag}`);
  writeBridgeConflist(d, '10-masq.conflist', { name: `vmlet-masq-${tag}`, bridge, subnet, ipv6: { subnet: `${POD6}/64`, gateway: GATEWAY6 } });
});

after(async () => {
  await removeAllAndStop(d);
  images?.close();
  responder?.close();
  deleteLink(bridge);
  if (Object.keys(timings).length > 0) console.log(`# masquerade guest timings (ms): ${JSON.stringify(timings)}`);
});

function ssh(ip: string, command: string, timeoutMs?: number): Promise<string> {
  return sshGuest(key, ip, command, timeoutMs);
}

function hostVeths(): string[] {
  const out = execFileSync('ip', ['-j', 'link', 'show', 'master', bridge], { encoding: 'utf8' });
  return (JSON.parse(out || '[]') as { ifname: string }[]).map((l) => l.ifname);
}

test('masquerade, dual stack: the host reaches the guest through the pod IPs, the guest reaches the host as the pod IPs, nothing left after Stop/Remove', { timeout: 1_200_000 }, async (t) => {
  const suiteStart = Date.now();
  await d.image.PullImage!({ image: { image: imageUrl } }, { deadlineMs: 300_000 });
  const logDir = join(d.dir, 'pod-logs');
  mkdirSync(logDir, { recursive: true });
  const podConfig = {
    metadata: { name: 'masq', namespace: 'default', uid: `uid-masq-${tag}`, attempt: 0 },
    hostname: 'masq',
    log_directory: logDir,
    port_mappings: [{ protocol: 'TCP', container_port: 22 }],
    annotations: { 'vmlet.io/network-binding': 'masquerade', VirtletSSHKeys: key.publicKey },
    linux: {},
  };
  const { pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config: podConfig });
  const sandbox = await d.runtime.PodSandboxStatus!({ pod_sandbox_id: sandboxId, verbose: true });
  const podIp = sandbox.status.network.ip as string;
  const podIp6 = ((sandbox.status.network.additional_ips ?? []) as { ip: string }[]).map((a) => a.ip).find((a) => a.includes(':'))!;
  const netns = JSON.parse(sandbox.info.info).netnsPath as string;
  assert.match(podIp, /^198\.19\.54\.\d+$/);
  assert.ok(podIp6?.startsWith(`${ula}:1:`), `IPv6 pod IP: ${JSON.stringify(sandbox.status.network)}`);
  const { container_id: id } = await d.runtime.CreateContainer!({
    pod_sandbox_id: sandboxId,
    config: { metadata: { name: 'vm', attempt: 0 }, image: { image: imageUrl }, log_path: 'vm.log', linux: { resources: { memory_limit_in_bytes: String(1024 ** 3) } } },
    sandbox_config: podConfig,
  });
  const started = Date.now();
  await d.runtime.StartContainer!({ container_id: id }, { deadlineMs: 180_000 });
  await waitFor(`an SSH login through the pod IP ${podIp}`, 600_000, () => ssh(podIp, 'true', 20_000).then(() => true, () => undefined));
  timings['StartContainer to SSH login through the pod IP'] = Date.now() - started;

  await t.test('the sandbox status shows the masquerade binding; the veth keeps the pod IPs, the NAT tables carry the owner id', async () => {
    const info = JSON.parse((await d.runtime.PodSandboxStatus!({ pod_sandbox_id: sandboxId, verbose: true })).info.info);
    const iface = info.network.interfaces[0];
    assert.equal(iface.kind, 'masquerade');
    assert.deepEqual(iface.ports, [{ protocol: 'tcp', port: 22 }]);
    assert.equal(iface.ipv6?.podAddress, podIp6);
    const nsName = netns.split('/').pop()!;
    const addrs = execFileSync('ip', ['-n', nsName, '-o', 'addr', 'show', 'dev', 'eth0'], { encoding: 'utf8' });
    assert.match(addrs, new RegExp(`inet ${podIp.replace(/\./g, '\\.')}/24`));
    assert.match(addrs, new RegExp(`inet6 ${podIp6}/64`));
    const tables = execFileSync('ip', ['netns', 'exec', nsName, 'nft', 'list', 'tables'], { encoding: 'utf8' });
    const owner = ownerIdFor(d.stateDir).slice(0, 8);
    assert.match(tables, new RegExp(`table ip vmlet-${owner}-masq-vbr`));
    assert.match(tables, new RegExp(`table ip6 vmlet-${owner}-masq-vbr`));
  });

  await t.test('the guest has the internal addresses and its default routes via the internal gateways', async () => {
    const out = await ssh(podIp, 'ip -4 -o addr show dev eth0; ip -4 route show default');
    assert.match(out, /inet 10\.0\.2\.2\/24/);
    assert.match(out, /default via 10\.0\.2\.1/);
    // The IPv6 address may still be in duplicate address detection when sshd answers on IPv4.
    const out6 = await waitFor('the internal IPv6 address', 60_000, async () => {
      const text = await ssh(podIp, 'ip -6 -o addr show dev eth0 scope global; ip -6 route show default');
      return /inet6 fd10:0:2::2\/120 /.test(text) && !/tentative/.test(text) && /^default via /m.test(text) ? text : undefined;
    });
    assert.match(out6, /^default via (fd10:0:2::1|fe80::\S+) dev eth0/m, out6);
  });

  await t.test('the host reaches the guest through the pod\'s IPv6 address (NAT66)', async () => {
    const started6 = Date.now();
    assert.equal((await ssh(podIp6, 'hostname')).trim(), 'masq');
    timings['SSH login through the pod IPv6 address'] = Date.now() - started6;
  });

  await t.test('the guest reaches the host over both families: the host sees the pod\'s address of that family as the source', async () => {
    const call = (host: string) => `exec 3<>/dev/tcp/${host}/${responderPort}; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3`;
    const out = await ssh(podIp, call(`${subnet}.1`));
    assert.match(out, new RegExp(`seen (::ffff:)?${podIp.replace(/\./g, '\\.')}\\n`));
    const out6 = await ssh(podIp, call(GATEWAY6));
    assert.match(out6, new RegExp(`seen ${podIp6}\\n`));
  });

  await t.test('Stop/Remove leave no netns, NAT table, host veth, domain or QEMU', async () => {
    const nsName = netns.split('/').pop()!;
    await d.runtime.StopContainer!({ container_id: id, timeout: '60' }, { deadlineMs: 120_000 });
    await d.runtime.RemoveContainer!({ container_id: id });
    await d.runtime.StopPodSandbox!({ pod_sandbox_id: sandboxId });
    assert.equal(existsSync(netns), false, 'netns left after StopPodSandbox');
    await d.runtime.RemovePodSandbox!({ pod_sandbox_id: sandboxId });
    assert.deepEqual(hostVeths(), [], 'host-side veth left');
    const nsList = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    assert.ok(!nsList.includes(nsName), `netns ${nsName} still listed`);
    const domains = execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'list', '--all', '--name'], { encoding: 'utf8' });
    assert.ok(!domains.includes(id.slice(0, 12)), `domain left: ${domains}`);
    assert.deepEqual(qemuPids(d.stateDir), []);
  });
  timings['whole test'] = Date.now() - suiteStart;
});
