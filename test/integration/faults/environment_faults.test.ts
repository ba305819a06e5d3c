/**
 * Faults from vmlet's surroundings, through a real `vmlet serve`: a CNI plugin that hangs, and an
 * image directory that fills up. Each gets a clear error, leaves nothing behind, and the runtime
 * keeps working. (CNI plugins failing mid-chain: test/integration/cri/sandbox.test.ts; libvirtd
 * restarting under vmlet: test/integration/libvirt/connection.test.ts; SIGKILL of serve and netd
 * at every step: fault_points.test.ts.) Pod network: 198.19.38.0/24.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startTestDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { clearStaleTestSubnet } from '../../helpers/e2e.js';
import { countLeftovers, type FaultRig } from '../../helpers/fault_cycles.js';

const SUBNET_PREFIX = '198.19.38';
const tag = randomBytes(3).toString('hex');
const work = mkdtempSync(join(tmpdir(), 'vmlet-envfaults-'));
const imageDir = join(work, 'images-tmpfs');
const pluginDir = join(work, 'cni-bin');
const TMPFS_MIB = 24;
let d: TestDaemon | undefined;
let server: Server;
let base: string;
let rig: FaultRig;
let mounted = false;

before(async () => {
  await ensureLibvirtd();
  clearStaleTestSubnet(SUBNET_PREFIX);
  chmodSync(work, 0o711);
  mkdirSync(imageDir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_MIB}m,mode=0755`, `vmlet-test-${tag}`, imageDir]);
  mounted = true;
  mkdirSync(pluginDir);
  // A plugin that never answers ADD (DEL is quick, as a wedged plugin's DEL often is not: vmlet must not care).
  writeFileSync(join(pluginDir, 'vmlet-test-hang'), '#!/bin/sh\nif [ "$CNI_COMMAND" = ADD ]; then exec sleep 3600; fi\nexit 0\n');
  chmodSync(join(pluginDir, 'vmlet-test-hang'), 0o755);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(work, 'small.qcow2'), '64M']);
  const small = readFileSync(join(work, 'small.qcow2'));
  const big = randomBytes(40 * 1024 * 1024); // over the tmpfs, and incompressible
  server = createServer((req, res) => {
    if (req.url === '/small.qcow2') {
      res.writeHead(200, { 'content-length': small.length });
      res.end(small);
    } else if (req.url === '/big-announced.raw') {
      res.writeHead(200, { 'content-length': big.length });
      res.end(big);
    } else if (req.url === '/big-chunked.raw') {
      res.writeHead(200); // no length: only the full disk stops it
      res.end(big);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  d = await startTestDaemon({
    dir: join(work, 'daemon'),
    args: ['--kvm', 'off', '--image-dir', imageDir, '--cni-timeout-ms', '3000', '--cni-bin-dir', `/opt/cni/bin:/usr/lib/cni:${pluginDir}`],
  });
  rig = { dir: d.dir, stateDir: d.stateDir, bridge: `vef${tag}`, ipamDir: join(work, 'ipam'), imageRef: '', tag };
});

after(async () => {
  if (d && d.child.exitCode === null) {
    for (const s of (await d.runtime.ListPodSandbox!({}).catch(() => ({ items: [] }))).items) {
      await d.runtime.RemovePodSandbox!({ pod_sandbox_id: s.id }).catch(() => {});
    }
  }
  await d?.cleanup();
  server?.close();
  if (mounted) execFileSync('umount', [imageDir]);
  rmSync(work, { recursive: true, force: true });
  try {
    execFileSync('ip', ['link', 'del', rig.bridge], { stdio: 'ignore' });
  } catch {
    /* not there */
  }
});

function conflist(extraPlugin?: object): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-envfaults-${tag}`,
    plugins: [
      { type: 'bridge', bridge: rig.bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: rig.ipamDir, ranges: [[{ subnet: `${SUBNET_PREFIX}.0/24` }]] } },
      ...(extraPlugin ? [extraPlugin] : []),
    ],
  });
}

/** Files in the image dir's tmpfs (the index and lock of a working store are expected). */
function usedBytes(): number {
  const s = statfsSync(imageDir);
  return (s.blocks - s.bfree) * s.bsize;
}

async function code(p: Promise<unknown>): Promise<{ code: grpc.status; details: string }> {
  try {
    await p;
    return { code: grpc.status.OK, details: '' };
  } catch (err) {
    return { code: (err as grpc.ServiceError).code, details: (err as grpc.ServiceError).details };
  }
}

function hangingPlugins(): number[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('sleep\x003600') && readFileSync(`/proc/${p}/environ`, 'utf8').includes(`vmlet-envfaults-${tag}`);
    } catch {
      return false;
    }
  }).map(Number);
}

test('a full image directory: refused up front when announced, RESOURCE_EXHAUSTED mid-download when not, no partial file, pulls work after', { timeout: 300_000 }, async () => {
  const before = usedBytes();
  const announced = await code(d!.image.PullImage!({ image: { image: `${base}/big-announced.raw` } }));
  assert.equal(announced.code, grpc.status.RESOURCE_EXHAUSTED, announced.details);
  assert.match(announced.details, /big-announced\.raw/);
  const chunked = await code(d!.image.PullImage!({ image: { image: `${base}/big-chunked.raw` } }));
  assert.equal(chunked.code, grpc.status.RESOURCE_EXHAUSTED, chunked.details);
  assert.match(chunked.details, /no space left.*big-chunked\.raw/);
  // The store's own files may have been written by the first pull attempt; a partial 40 MiB would show.
  assert.ok(usedBytes() - before < 1024 * 1024, `the image dir grew by ${usedBytes() - before} bytes after two failed pulls`);
  assert.deepEqual((await d!.image.ListImages!({})).images, []);
  const ok = await d!.image.PullImage!({ image: { image: `${base}/small.qcow2` } });
  assert.ok(ok.image_ref);
  assert.equal(d!.child.exitCode, null);
});

test('a CNI plugin that hangs: RunPodSandbox fails after --cni-timeout, the plugin is killed, nothing is left; the next pod works', { timeout: 300_000 }, async () => {
  const confPath = join(d!.cniConfDir, '10-envfaults.conflist');
  writeFileSync(confPath, conflist({ type: 'vmlet-test-hang' }));
  const config = (name: string) => ({ metadata: { name, namespace: 'envfaults', uid: `uid-${name}-${tag}`, attempt: 0 }, linux: {} });
  const started = Date.now();
  const hung = await code(d!.runtime.RunPodSandbox!({ config: config('hangs') }));
  const ms = Date.now() - started;
  assert.notEqual(hung.code, grpc.status.OK);
  assert.match(hung.details, /vmlet-test-hang/, 'the error names the plugin that hung');
  assert.ok(ms < 30_000, `RunPodSandbox took ${ms} ms with a 3 s CNI timeout`);
  assert.deepEqual(hangingPlugins(), [], 'the hung plugin was killed');
  const ids = new Set([...d!.output().matchAll(/\b[0-9a-f]{64}\b/g)].map((m) => m[0]));
  assert.deepEqual(await countLeftovers(rig, ids), {});
  assert.deepEqual((await d!.runtime.ListPodSandbox!({})).items, []);

  writeFileSync(confPath, conflist());
  const id = (await d!.runtime.RunPodSandbox!({ config: config('works') })).pod_sandbox_id;
  await d!.runtime.StopPodSandbox!({ pod_sandbox_id: id });
  await d!.runtime.RemovePodSandbox!({ pod_sandbox_id: id });
  ids.add(id);
  assert.deepEqual(await countLeftovers(rig, ids), {});
  assert.ok(!existsSync(join(rig.ipamDir, `vmlet-envfaults-${tag}`)) || readdirSync(join(rig.ipamDir, `vmlet-envfaults-${tag}`)).every((f) => f === 'lock' || f.startsWith('last_reserved_ip')));
});
