/**
 * Hostile documents through a real `vmlet serve`: a pod whose cloud-init annotations are deep,
 * huge or alias-bombed YAML gets INVALID_ARGUMENT naming the annotation at CreateContainer, the
 * daemon keeps serving, and nothing of the refused container is left. Pod network: a /24 of
 * 198.19.0.0/16 picked at random, a bridge with a random tag.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type net from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startTestDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';

let d: TestDaemon;
let server: Server;
let imageUrl: string;
const tag = randomBytes(3).toString('hex');
const bridge = `vhb${tag}`;
const subnet = `198.19.${randomInt(100, 250)}.0/24`;

before(async () => {
  await ensureLibvirtd();
  d = await startTestDaemon();
  writeFileSync(join(d.cniConfDir, '10-hostile.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-hostile-${tag}`,
    plugins: [{ type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: join(d.dir, 'ipam'), ranges: [[{ subnet }]] } }],
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
});

after(async () => {
  if (d && d.child.exitCode === null) {
    for (const c of (await d.runtime.ListContainers!({}).catch(() => ({ containers: [] }))).containers) {
      await d.runtime.RemoveContainer!({ container_id: c.id }).catch(() => {});
    }
    for (const s of (await d.runtime.ListPodSandbox!({}).catch(() => ({ items: [] }))).items) {
      await d.runtime.RemovePodSandbox!({ pod_sandbox_id: s.id }).catch((err: Error) => console.error('cleanup:', err.message));
    }
  }
  await d?.cleanup();
  server?.close();
  try {
    execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
  } catch {
    /* not there */
  }
});

function podConfig(name: string, annotations: Record<string, string>) {
  return {
    metadata: { name, namespace: 'default', uid: `uid-${name}-${tag}`, attempt: 0 },
    hostname: name,
    annotations,
    linux: { security_context: { namespace_options: {} } },
  };
}

const deepFlow = (depth: number): string => `x: ${'['.repeat(depth)}${']'.repeat(depth)}\n`;

const cases: Array<{ name: string; annotation: string; value: string; message: RegExp }> = [
  { name: 'user-data 60000-deep flow sequence (120 KB)', annotation: 'VirtletCloudInitUserData', value: deepFlow(60000), message: /VirtletCloudInitUserData.*nest/ },
  { name: 'root volume of 7Pi', annotation: 'VirtletRootVolumeSize', value: '7Pi', message: /VirtletRootVolumeSize.*larger than qcow2 allows/ },
  { name: 'meta-data 60000-deep block sequence', annotation: 'VirtletCloudInitMetaData', value: `x:\n${'- '.repeat(60000)}1\n`, message: /VirtletCloudInitMetaData.*nest/ },
  { name: 'user-data alias to itself (a cycle)', annotation: 'VirtletCloudInitUserData', value: 'x: &a [*a]\n', message: /VirtletCloudInitUserData.*alias/ },
  { name: 'meta-data alias to itself (a cycle)', annotation: 'VirtletCloudInitMetaData', value: 'x: &a {b: *a}\n', message: /VirtletCloudInitMetaData.*alias/ },
  { name: 'user-data alias bomb', annotation: 'VirtletCloudInitUserData', value: aliasBomb(), message: /VirtletCloudInitUserData.*alias/ },
];

function aliasBomb(): string {
  const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < 9; i++) lines.push(`a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]`);
  return `${lines.join('\n')}\n`;
}

for (const c of cases) {
  test(`CreateContainer with ${c.name}: INVALID_ARGUMENT naming the annotation, serve keeps running, nothing left`, async () => {
    const config = podConfig(`hostile-${randomBytes(2).toString('hex')}`, { [c.annotation]: c.value });
    const { pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config });
    try {
      const err = await d.runtime.CreateContainer!({
        pod_sandbox_id: sandboxId,
        config: { metadata: { name: 'vm', attempt: 0 }, image: { image: imageUrl } },
        sandbox_config: config,
      }).then(() => undefined, (e: grpc.ServiceError) => e);
      assert.equal(d.child.exitCode, null, `vmlet serve died:\n${d.output().slice(-3000)}`);
      assert.ok(err, 'CreateContainer succeeded');
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
      assert.match(err.details, c.message);
      assert.equal((await d.runtime.Version!({})).runtime_name, 'vmlet');
      assert.deepEqual((await d.runtime.ListContainers!({})).containers, []);
      const vmsDir = join(d.stateDir, 'vms');
      assert.deepEqual(existsSync(vmsDir) ? readdirSync(vmsDir) : [], [], 'container dirs left');
    } finally {
      if (d.child.exitCode === null) await d.runtime.RemovePodSandbox!({ pod_sandbox_id: sandboxId });
    }
  });
}

test('PullImage whose caller gives up (deadline) stops the download: the server sees the close, no temp file stays', async () => {
  let closed = false;
  let sent = 0;
  const slow = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': String(2 ** 30) });
    const timer = setInterval(() => {
      res.write(Buffer.alloc(4096, 1));
      sent += 4096;
    }, 20);
    res.once('close', () => {
      clearInterval(timer);
      closed = true;
    });
  });
  await new Promise<void>((r) => slow.listen(0, '127.0.0.1', () => r()));
  try {
    const url = `http://127.0.0.1:${(slow.address() as net.AddressInfo).port}/slow.raw`;
    const err = await d.image.PullImage!({ image: { image: url } }, { deadlineMs: 1500 }).then(() => undefined, (e: grpc.ServiceError) => e);
    assert.ok(err, 'the pull succeeded');
    assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED, err.details);
    for (let i = 0; i < 500 && !closed; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(closed, `the daemon still downloads (${sent} bytes sent)`);
    const tmp = join(d.imageDir, 'tmp');
    for (let i = 0; i < 200 && existsSync(tmp) && readdirSync(tmp).length > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(existsSync(tmp) ? readdirSync(tmp) : [], [], 'partial download left');
    // The daemon's log line is written after the abort reaches the store: give it time to arrive.
    for (let i = 0; i < 500 && !/pull of .*slow\.raw.* cancelled/.test(d.output()); i++) await new Promise((r) => setTimeout(r, 10));
    assert.match(d.output(), /pull of .*slow\.raw.* cancelled/);
  } finally {
    slow.closeAllConnections();
    slow.close();
  }
});
