/**
 * The daemon as kubelet and crictl see it: a real `vmlet serve` (with its netd) on a unix socket,
 * a real grpc-js client, real libvirtd, real files and a real HTTP server on 127.0.0.1.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, writeFileSync, mkdirSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { loadCriServices } from '../../../src/cri/proto.js';
import { startTestDaemon, grpcCode, criClient, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { connectRaw, rawUnary } from '../../helpers/http2_raw.js';

let d: TestDaemon;

before(async () => {
  await ensureLibvirtd();
  d = await startTestDaemon();
});

after(async () => {
  await d?.cleanup();
});

test('Version answers as a v1 runtime', async () => {
  const v = await d.runtime.Version!({});
  assert.equal(v.runtime_name, 'vmlet');
  assert.equal(v.runtime_api_version, 'v1');
  assert.match(v.runtime_version, /^\d+\.\d+\.\d+/);
});

test('every RPC of both services answers for real or UNIMPLEMENTED with a message, never UNKNOWN or a hang', async () => {
  const { runtimeService, imageService } = loadCriServices();
  const answered: string[] = [];
  for (const [service, def] of [['RuntimeService', runtimeService], ['ImageService', imageService]] as const) {
    const Ctor = grpc.makeGenericClientConstructor(def, service);
    const client = new Ctor(`unix://${d.socket}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, Function>;
    try {
      for (const [name, method] of Object.entries(def)) {
        const deadline = new Date(Date.now() + 15_000);
        const code = await new Promise<number>((resolve) => {
          if (method.responseStream) {
            const call = method.requestStream ? client[name]!.call(client, { deadline }) : client[name]!.call(client, {}, { deadline });
            call.on('data', () => {});
            call.on('error', (err: grpc.ServiceError) => resolve(err.code));
            call.on('end', () => resolve(grpc.status.OK));
            if (method.requestStream) call.end();
          } else {
            client[name]!.call(client, {}, { deadline }, (err: grpc.ServiceError | null) => {
              if (err?.code === grpc.status.UNIMPLEMENTED) assert.match(err.details, new RegExp(`does not implement ${name}`));
              resolve(err ? err.code : grpc.status.OK);
            });
          }
        });
        assert.notEqual(code, grpc.status.UNKNOWN, `${name} answered UNKNOWN`);
        assert.notEqual(code, grpc.status.DEADLINE_EXCEEDED, `${name} hung`);
        assert.notEqual(code, grpc.status.INTERNAL, `${name} answered INTERNAL to an empty request`);
        answered.push(`${name}:${grpc.status[code]}`);
      }
    } finally {
      client.close();
    }
  }
  // The verbs that must be real (crictl probes Version and ImageFsInfo before every command).
  for (const must of ['Version:OK', 'Status:OK', 'ImageFsInfo:OK', 'ListImages:OK', 'ListPodSandbox:OK']) {
    assert.ok(answered.includes(must), `${must} missing from ${answered.join(' ')}`);
  }
  assert.equal(answered.length, Object.keys(runtimeService).length + Object.keys(imageService).length);
});

test('Status: RuntimeReady from libvirtd, NetworkReady from the CNI conf dir, verbose config', async () => {
  const conditions = async () => {
    const s = await d.runtime.Status!({ verbose: true });
    return { byType: Object.fromEntries(s.status.conditions.map((c: { type: string }) => [c.type, c])), info: s.info };
  };
  let { byType, info } = await conditions();
  assert.equal(byType.RuntimeReady.status, true);
  assert.equal(byType.NetworkReady.status, false);
  assert.equal(byType.NetworkReady.reason, 'NetworkPluginNotReady');
  assert.match(byType.NetworkReady.message, /no network config/);
  const config = JSON.parse(info.config);
  assert.equal(config.socket, d.socket);
  assert.equal(config.stateDir, d.stateDir);

  // A config without cniVersion is refused, naming the file.
  writeFileSync(join(d.cniConfDir, '10-old.conf'), JSON.stringify({ name: 'old', type: 'bridge' }));
  ({ byType } = await conditions());
  assert.equal(byType.NetworkReady.status, false);
  assert.match(byType.NetworkReady.message, /10-old\.conf/);
  assert.match(byType.NetworkReady.message, /cniVersion/);

  writeFileSync(join(d.cniConfDir, '20-ok.conflist'), JSON.stringify({
    cniVersion: '1.0.0', name: 'ok', plugins: [{ type: 'bridge', bridge: 'vt-unused0', ipam: { type: 'host-local', subnet: '198.18.250.0/24' } }],
  }));
  ({ byType } = await conditions());
  assert.equal(byType.NetworkReady.status, true);
});

test('UpdateRuntimeConfig stores the pod CIDR and refuses a malformed one', async () => {
  assert.equal(await grpcCode(d.runtime.UpdateRuntimeConfig!({ runtime_config: { network_config: { pod_cidr: 'not-a-cidr' } } })), grpc.status.INVALID_ARGUMENT);
  await d.runtime.UpdateRuntimeConfig!({ runtime_config: { network_config: { pod_cidr: '198.19.0.0/16' } } });
  const s = await d.runtime.Status!({ verbose: true });
  assert.equal(JSON.parse(s.info.runtimeSettings).podCidr, '198.19.0.0/16');
});

test('malformed and unknown sandbox requests get the right codes and change nothing', async () => {
  const before = (await d.runtime.ListPodSandbox!({})).items.length;
  assert.equal(await grpcCode(d.runtime.RunPodSandbox!({})), grpc.status.INVALID_ARGUMENT);
  assert.equal(await grpcCode(d.runtime.RunPodSandbox!({ config: { metadata: { name: 'x', namespace: 'y' } } })), grpc.status.INVALID_ARGUMENT);
  assert.equal(await grpcCode(d.runtime.RunPodSandbox!({ config: { metadata: { name: 'a\u0000b', namespace: 'y', uid: 'u' } } })), grpc.status.INVALID_ARGUMENT);
  assert.equal(await grpcCode(d.runtime.RunPodSandbox!({ config: { metadata: { name: 'n'.repeat(10_000), namespace: 'y', uid: 'u' } } })), grpc.status.INVALID_ARGUMENT);
  assert.equal(await grpcCode(d.runtime.RunPodSandbox!({
    config: { metadata: { name: 'h', namespace: 'y', uid: 'u' }, linux: { security_context: { namespace_options: { network: 'NODE' } } } },
  })), grpc.status.INVALID_ARGUMENT);
  assert.equal(await grpcCode(d.runtime.PodSandboxStatus!({ pod_sandbox_id: '../../etc/passwd' })), grpc.status.INVALID_ARGUMENT);
  assert.equal(await grpcCode(d.runtime.PodSandboxStatus!({ pod_sandbox_id: 'ab'.repeat(32) })), grpc.status.NOT_FOUND);
  assert.equal(await grpcCode(d.runtime.StopPodSandbox!({ pod_sandbox_id: 'ab'.repeat(32) })), grpc.status.NOT_FOUND);
  await d.runtime.RemovePodSandbox!({ pod_sandbox_id: 'ab'.repeat(32) }); // already gone: success
  assert.equal((await d.runtime.ListPodSandbox!({})).items.length, before);
  assert.equal(await grpcCode(d.image.PullImage!({ image: { image: '' } })), grpc.status.INVALID_ARGUMENT);
  assert.equal(await grpcCode(d.image.PullImage!({ image: { image: 'no-translation-for-this' } })), grpc.status.NOT_FOUND);
  // The daemon is still fine.
  assert.equal((await d.runtime.Version!({})).runtime_name, 'vmlet');
});

test('images: pull over HTTP, list, status, fs info, remove (idempotent)', async () => {
  const served = join(d.dir, 'served.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', served, '64M']);
  const bytes = readFileSync(served);
  let hits = 0;
  const server: Server = createServer((_req, res) => {
    hits++;
    res.writeHead(200, { 'content-length': bytes.length });
    res.end(bytes);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  try {
    const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/disk.qcow2`;
    const pulled = await d.image.PullImage!({ image: { image: url } });
    assert.match(pulled.image_ref, /^sha256:[0-9a-f]{64}$/);
    assert.equal(hits, 1);
    const listed = await d.image.ListImages!({ filter: {} });
    assert.ok(listed.images.some((i: { id: string }) => i.id === pulled.image_ref));
    const status = await d.image.ImageStatus!({ image: { image: url }, verbose: true });
    assert.equal(status.image.id, pulled.image_ref);
    assert.equal(status.image.size, String(bytes.length));
    assert.equal(JSON.parse(status.info.info).format, 'qcow2');
    const fs = await d.image.ImageFsInfo!({});
    assert.ok(BigInt(fs.image_filesystems[0].used_bytes.value) >= BigInt(bytes.length));
    assert.ok(fs.image_filesystems[0].fs_id.mountpoint.startsWith('/'));
    await d.image.RemoveImage!({ image: { image: pulled.image_ref } });
    await d.image.RemoveImage!({ image: { image: pulled.image_ref } });
    const gone = await d.image.ImageStatus!({ image: { image: url } });
    assert.equal(gone.image ?? null, null);
  } finally {
    server.close();
  }
});

test('old clients: socket path as :authority works over the daemon socket for a request sequence', async () => {
  const session = connectRaw(d.socket);
  try {
    for (const path of ['/runtime.v1.RuntimeService/Version', '/runtime.v1.ImageService/ImageFsInfo', '/runtime.v1.RuntimeService/ListPodSandbox']) {
      for (let i = 0; i < 20; i++) {
        const r = await rawUnary(session, path, d.socket, Buffer.alloc(0));
        assert.equal(r.rstCode, 0, path);
        assert.equal(r.grpcStatus, '0', `${path}: ${decodeURIComponent(r.grpcMessage ?? '')}`);
      }
    }
  } finally {
    session.close();
  }
});

test('socket is 0600 in a 0700 directory; a second daemon on a live socket is refused', async () => {
  assert.equal(statSync(d.socket).mode & 0o777, 0o600);
  assert.equal(statSync(join(d.socket, '..')).mode & 0o777, 0o700);
  const second = join(d.dir, 'second');
  mkdirSync(second);
  await assert.rejects(
    startTestDaemon({ args: ['--socket', d.socket, '--state-dir', join(second, 'state')], readyTimeoutMs: 30_000 }),
    /another process is serving on/,
  );
});

test('bad config fails at start naming the key', () => {
  let out = '';
  try {
    execFileSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'serve', '--kvm', 'sometimes'], { cwd: join(import.meta.dirname, '..', '..', '..'), stdio: 'pipe' });
    assert.fail('serve started with a bad value');
  } catch (err) {
    out = String((err as { stderr: Buffer }).stderr);
    assert.equal((err as { status: number }).status, 2);
  }
  assert.match(out, /config kvm: must be one of auto, on, off/);
});

test('a stale socket file is replaced; SIGTERM drains and exits 0, removing the socket, netd gone', async () => {
  const d2dir = join(d.dir, 'stale');
  mkdirSync(join(d2dir, 'run'), { recursive: true });
  const stale = join(d2dir, 'run', 'vmlet.sock');
  // A socket file nobody listens on: a process that bound it exits without unlinking it.
  execFileSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.exit(0))`]);
  assert.ok(existsSync(stale));
  const d2 = await startTestDaemon({ dir: d2dir });
  try {
    assert.equal((await d2.runtime.Version!({})).runtime_name, 'vmlet');
    const netdPids = childPids(d2.child.pid!);
    assert.equal(netdPids.length, 1, 'serve runs exactly one netd');
    // kubelet keeps its connection open: an idle client must not hold the daemon up.
    const idle = criClient(d2.socket);
    assert.equal((await idle.runtime.Version!({})).runtime_name, 'vmlet');
    const stopAsked = Date.now();
    const code = await d2.stop();
    assert.equal(code, 0);
    assert.ok(Date.now() - stopAsked < 5_000, `SIGTERM took ${Date.now() - stopAsked} ms with an idle client`);
    idle.runtime.close();
    idle.image.close();
    assert.equal(existsSync(stale), false);
    for (const pid of netdPids) assert.equal(alive(pid), false, `netd ${pid} outlived serve`);
  } finally {
    await d2.cleanup();
  }
});

function childPids(pid: number): number[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ')[1] === String(pid);
      } catch {
        return false;
      }
    })
    .map(Number);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
