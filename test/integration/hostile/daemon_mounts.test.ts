/**
 * Hostile mount paths through a real `vmlet serve` with a warm pool (#12): a CreateContainer
 * whose mounts hold a traversal, a symlink leading out of its directory, a path that does not
 * exist or a file where a directory is expected is refused with INVALID_ARGUMENT naming the mount,
 * and nothing is left behind: no container, no bind mount (not even of the good mount listed
 * before the bad one), and the warm VM the sandbox had claimed is gone with its directory and its
 * export directory (it was adopted: before the fix it stayed running outside the pool). The host
 * tree the paths point into is unchanged. A control gives the good mount alone and sees it bound;
 * a last test: a non-block device and `cdi_devices` are refused by name.
 * Pod network: 198.18.222.0/24 on a bridge with a random tag. No guest boots: warm VMs stay paused.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type net from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startTestDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { clearStaleTestSubnet, deleteLink, waitFor } from '../../helpers/e2e.js';

let d: TestDaemon;
let server: Server;
let imageUrl: string;
let host: string;
const tag = randomBytes(3).toString('hex');
const bridge = `vhm${tag}`;
const subnet = '198.18.222';

before(async () => {
  await ensureLibvirtd();
  clearStaleTestSubnet(subnet);
  d = await startTestDaemon({ args: ['--kvm', 'off', '--vm-warm-pool', '1'] });
  writeFileSync(join(d.cniConfDir, '10-hostile-mounts.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-hostile-mounts-${tag}`,
    plugins: [{ type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: join(d.dir, 'ipam'), ranges: [[{ subnet: `${subnet}.0/24` }]] } }],
  }));
  const served = join(d.dir, 'served.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', served, '64M']);
  const bytes = readFileSync(served);
  server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': bytes.length });
    res.end(bytes);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  imageUrl = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/disk.qcow2`;
  await d.image.PullImage!({ image: { image: imageUrl } });

  // What a pod's host paths could point into: a pod dir with a good volume, a file, and planted links.
  host = join(d.dir, 'host');
  mkdirSync(join(host, 'pod', 'volumes', 'data'), { recursive: true });
  writeFileSync(join(host, 'pod', 'volumes', 'data', 'f'), 'good');
  writeFileSync(join(host, 'pod', 'etc-hosts'), '127.0.0.1 localhost\n');
  writeFileSync(join(host, 'secret'), 'not for pods', { mode: 0o600 });
  symlinkSync('/etc', join(host, 'pod', 'abs-escape'));
  symlinkSync('../secret', join(host, 'pod', 'rel-escape'));
});

after(async () => {
  try {
    if (d && d.child.exitCode === null) {
      for (const c of (await d.runtime.ListContainers!({}).catch(() => ({ containers: [] }))).containers) {
        await d.runtime.RemoveContainer!({ container_id: c.id }).catch(() => {});
      }
      for (const s of (await d.runtime.ListPodSandbox!({}).catch(() => ({ items: [] }))).items) {
        await d.runtime.RemovePodSandbox!({ pod_sandbox_id: s.id }).catch((err: Error) => console.error('cleanup:', err.message));
      }
      await d.stop();
    }
    // The volumes root stays mounted if a VM was left; removing the dir would then fail (EBUSY).
    if (d) for (const m of mountPointsUnder(d.dir).reverse()) execFileSync('umount', ['--lazy', m]);
    await d?.cleanup();
  } finally {
    server?.close();
    deleteLink(bridge);
  }
});

function mountPointsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p === dir || p.startsWith(`${dir}/`));
}

function podConfig(name: string) {
  return {
    metadata: { name, namespace: 'default', uid: `uid-${name}-${tag}`, attempt: 0 },
    hostname: name,
    linux: { security_context: { namespace_options: {} } },
  };
}

/** Warm VMs that became idle so far: made by the pool, or given back by a sandbox that never used its claim. */
function idleWarmEvents(): number {
  return d.output().split('\n').filter((l) => l.includes('"warm VM ready"') || l.includes('"unused warm VM returned to the pool"')).length;
}

/**
 * Waits until the pool has made or taken back `round` idle warm VMs and every VM directory belongs
 * to a paused warm domain, and returns their ids. (Usually one; two when a VM a sandbox gave back
 * arrived while the refill its claim started was still making one.)
 */
function idleWarmVms(round: number): Promise<string[]> {
  return waitFor(`idle warm VMs (round ${round})`, 240_000, () => {
    if (idleWarmEvents() < round) return undefined;
    const dirs = readdirSync(join(d.stateDir, 'vms'));
    if (dirs.length === 0) return undefined;
    for (const id of dirs) {
      try {
        const state = execFileSync('virsh', ['-c', 'qemu:///system', 'domstate', `vmlet-warm-${id.slice(0, 12)}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
        if (state !== 'paused') return undefined;
      } catch {
        return undefined;
      }
    }
    return dirs;
  });
}

function definedDomains(): string[] {
  return execFileSync('virsh', ['-c', 'qemu:///system', 'list', '--all', '--name'], { encoding: 'utf8' }).split('\n').map((s) => s.trim()).filter(Boolean);
}

/** Host tree listing (names and link targets), to see that nothing was created or moved. */
function snapshot(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).map((e) => {
    const p = join(e.parentPath ?? e.path, e.name);
    return e.isSymbolicLink() ? `${p} -> ${execFileSync('readlink', [p], { encoding: 'utf8' }).trim()}` : p;
  }).sort();
}

const good = () => ({ container_path: '/data', host_path: join(host, 'pod', 'volumes', 'data') });

/**
 * `cri`: refused by the CRI layer's checks (src/cri/container_create.ts), before the sandbox's warm
 * VM is adopted: it goes back to the pool when the sandbox goes. `volumes`: refused by the host
 * path checks (src/container/volumes/host_path.ts) after the adoption: the VM is destroyed.
 */
const cases: Array<{ name: string; layer: 'cri' | 'volumes'; bad: () => { container_path: string; host_path: string }; message: RegExp }> = [
  { name: 'a traversal (..) out of the pod dir', layer: 'cri', bad: () => ({ container_path: '/s', host_path: `${host}/pod/../secret` }), message: /host_path must not contain '\.\.'/ },
  { name: 'a symlink to /etc', layer: 'volumes', bad: () => ({ container_path: '/etc/x', host_path: join(host, 'pod', 'abs-escape') }), message: /symlink .*abs-escape -> "\/etc" leads outside/ },
  { name: 'a path through a symlink to /etc', layer: 'volumes', bad: () => ({ container_path: '/etc/x', host_path: join(host, 'pod', 'abs-escape', 'passwd') }), message: /leads outside/ },
  { name: 'a relative symlink out of its directory', layer: 'volumes', bad: () => ({ container_path: '/s', host_path: join(host, 'pod', 'rel-escape') }), message: /rel-escape -> "\.\.\/secret" leads outside/ },
  { name: 'a path that does not exist', layer: 'volumes', bad: () => ({ container_path: '/m', host_path: join(host, 'pod', 'missing') }), message: /does not exist/ },
  { name: 'a file where a directory is expected', layer: 'volumes', bad: () => ({ container_path: '/h', host_path: join(host, 'pod', 'etc-hosts', 'x') }), message: /file where a directory is expected|not a directory/ },
];

let round = 0;
for (const c of cases) {
  test(`CreateContainer with ${c.name} (on a claimed warm VM): INVALID_ARGUMENT naming the mount, nothing left`, { timeout: 300_000 }, async () => {
    round++;
    // A warm VM idle for this sandbox to claim (RunPodSandbox claims the oldest).
    const vmsDir = join(d.stateDir, 'vms');
    const volumesDir = join(d.stateDir, 'volumes');
    const idle = await idleWarmVms(round);
    const hostBefore = snapshot(host);
    const config = podConfig(`hm-${round}-${tag}`);
    const { pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config });
    try {
      const err = await d.runtime.CreateContainer!({
        pod_sandbox_id: sandboxId,
        config: { metadata: { name: 'vm', attempt: 0 }, image: { image: imageUrl }, mounts: [good(), c.bad()] },
        sandbox_config: config,
      }, { deadlineMs: 120_000 }).then(() => undefined, (e: grpc.ServiceError) => e);
      assert.equal(d.child.exitCode, null, `vmlet serve died:\n${d.output().slice(-3000)}`);
      assert.ok(err, 'CreateContainer succeeded');
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
      assert.match(err.details, new RegExp(`^config\\.mounts\\[1\\] \\(${c.bad().container_path.replace(/\//g, '\\/')}\\)[: ]`));
      assert.match(err.details, c.message);
      assert.deepEqual((await d.runtime.ListContainers!({})).containers, []);
      const gone = idle.filter((id) => !existsSync(join(vmsDir, id)));
      if (c.layer === 'volumes') {
        // The warm VM the sandbox claimed was adopted: it went with its domain, directory and export directory.
        assert.equal(gone.length, 1, `one of the idle warm VMs ${idle.join(', ')} should be gone`);
        assert.ok(!definedDomains().includes(`vmlet-warm-${gone[0]!.slice(0, 12)}`), 'the adopted warm domain is still defined');
        assert.ok(!existsSync(join(volumesDir, gone[0]!)), 'the adopted warm VM\'s export directory is left');
      } else {
        // Never adopted: still the sandbox's claim until the sandbox goes.
        assert.deepEqual(gone, []);
      }
      // Under the state dir only the volumes roots and each live warm VM's read-only share mount (ro/ over ro-stage/):
      // nothing of the refused container (the good mount listed first included) is bound anywhere.
      const live = readdirSync(vmsDir);
      const allowed = new Set([volumesDir, `${volumesDir}-stage`, ...live.map((id) => join(volumesDir, id, 'ro'))]);
      assert.deepEqual(mountPointsUnder(d.stateDir).filter((m) => !allowed.has(m)), []);
      assert.deepEqual(readdirSync(volumesDir).filter((id) => !live.includes(id)), [], 'an export directory without its VM');
      assert.deepEqual(snapshot(host), hostBefore);
    } finally {
      if (d.child.exitCode === null) await d.runtime.RemovePodSandbox!({ pod_sandbox_id: sandboxId });
    }
  });
}

test('control: the good mount alone is bound into the warm VM\'s export directory, and goes at RemoveContainer', { timeout: 300_000 }, async () => {
  round++;
  await idleWarmVms(round);
  const config = podConfig(`hm-ok-${tag}`);
  const { pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config });
  try {
    const { container_id: id } = await d.runtime.CreateContainer!({
      pod_sandbox_id: sandboxId,
      config: { metadata: { name: 'vm', attempt: 0 }, image: { image: imageUrl }, mounts: [good()] },
      sandbox_config: config,
    }, { deadlineMs: 120_000 });
    const entry = join(d.stateDir, 'volumes', id, 'rw', '0');
    assert.ok(mountPointsUnder(d.stateDir).includes(entry), `${entry} is not a mount point`);
    assert.equal(readFileSync(join(entry, 'f'), 'utf8'), 'good');
    await d.runtime.RemoveContainer!({ container_id: id });
    assert.deepEqual(mountPointsUnder(join(d.stateDir, 'volumes', id)), []);
    assert.ok(!existsSync(join(d.stateDir, 'volumes', id)));
  } finally {
    await d.runtime.RemovePodSandbox!({ pod_sandbox_id: sandboxId });
  }
});

test('a character device and cdi_devices are refused with INVALID_ARGUMENT naming them (no device passthrough); nothing is created', { timeout: 120_000 }, async () => {
  const config = podConfig(`hm-dev-${tag}`);
  const { pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config });
  try {
    const requests: [Record<string, unknown>, RegExp][] = [
      // Block devices become VM disks (docs/block-volumes.md); any other device node is refused.
      [{ devices: [{ container_path: '/dev/kvm', host_path: '/dev/kvm', permissions: 'rwm' }] }, /^config\.devices\[0\].*\/dev\/kvm is a character device, not a block device/],
      [{ CDI_devices: [{ name: 'vendor.example/gpu=0' }] }, /^config\.cdi_devices \(vendor\.example\/gpu=0\) are not supported/],
    ];
    for (const [extra, message] of requests) {
      const err = await d.runtime.CreateContainer!({
        pod_sandbox_id: sandboxId,
        config: { metadata: { name: 'vm', attempt: 0 }, image: { image: imageUrl }, ...extra },
        sandbox_config: config,
      }).then(() => undefined, (e: grpc.ServiceError) => e);
      assert.ok(err, `CreateContainer with ${JSON.stringify(extra)} succeeded`);
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
      assert.match(err.details, message);
      assert.deepEqual((await d.runtime.ListContainers!({})).containers, []);
    }
  } finally {
    await d.runtime.RemovePodSandbox!({ pod_sandbox_id: sandboxId });
  }
});
