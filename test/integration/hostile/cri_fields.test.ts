/**
 * Every CRI field a user controls, fed hostile values through a real `vmlet serve` over raw gRPC:
 * each case asserts the gRPC code, that the message names the field, that serve keeps serving,
 * and (at the end, and per case for the ones that build something) that nothing was left: no
 * sandbox or container beyond the fixture's, no netns, no VM directory, no domain. The table is
 * the suite: add a row for a new field. Pod network: 198.19.39.0/24 with a random bridge.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync, mkdirSync, symlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type net from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startTestDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { countLeftovers, type FaultRig } from '../../helpers/fault_cycles.js';
import { netnsNameFor } from '../../../src/network/names.js';

const { INVALID_ARGUMENT, NOT_FOUND, OK } = grpc.status;
const tag = randomBytes(3).toString('hex');
const bridge = `vhf${tag}`;
let d: TestDaemon;
let server: Server;
let imageUrl: string;
let sandboxId: string;
let rig: FaultRig;
const sandboxIds = new Set<string>();

const BIG = 'x'.repeat(64 * 1024);
const NUL = 'a\0b';

let podCount = 0;
/** A pod config; every call a new pod (RunPodSandbox of a known pod answers its existing id). */
function pod(name: string, extra: Record<string, unknown> = {}) {
  const unique = name === 'fixture' ? name : `${name}-${++podCount}`;
  return { metadata: { name: unique, namespace: 'hostile', uid: `uid-${unique}-${tag}`, attempt: 0 }, linux: { security_context: { namespace_options: {} } }, ...extra };
}

function container(extra: Record<string, unknown> = {}) {
  return { metadata: { name: 'vm', attempt: 0 }, image: { image: imageUrl }, ...extra };
}

interface Case {
  name: string;
  call: () => Promise<unknown>;
  code: grpc.status;
  /** What the message must say: the field (and why). */
  message?: RegExp;
}

const run = (config: unknown, runtime_handler?: string) => () => d.runtime.RunPodSandbox!({ config, ...(runtime_handler === undefined ? {} : { runtime_handler }) });
const create = (config: unknown, id?: string) => () => d.runtime.CreateContainer!({ pod_sandbox_id: id ?? sandboxId, config, sandbox_config: pod('fixture') });
/** A sandbox with these pod annotations, then CreateContainer: Virtlet annotations are read there. */
const createWithPodAnnotations = (annotations: Record<string, string>) => async () => {
  const id = (await d.runtime.RunPodSandbox!({ config: pod(`ann-${randomBytes(3).toString('hex')}`, { annotations }) })).pod_sandbox_id as string;
  sandboxIds.add(id);
  try {
    return await d.runtime.CreateContainer!({ pod_sandbox_id: id, config: container(), sandbox_config: pod('x', { annotations }) });
  } finally {
    await d.runtime.RemovePodSandbox!({ pod_sandbox_id: id });
  }
};
const unknownId = 'f'.repeat(64);

const cases = (): Case[] => [
  // RunPodSandbox
  { name: 'RunPodSandbox without config', call: run(undefined), code: INVALID_ARGUMENT, message: /config is required/ },
  { name: 'RunPodSandbox without metadata', call: run({ linux: {} }), code: INVALID_ARGUMENT, message: /config\.metadata/ },
  { name: 'metadata.name empty', call: run({ ...pod('x'), metadata: { name: '', namespace: 'n', uid: 'u' } }), code: INVALID_ARGUMENT, message: /config\.metadata\.name/ },
  { name: 'metadata.name with NUL', call: run({ ...pod('x'), metadata: { name: NUL, namespace: 'n', uid: 'u' } }), code: INVALID_ARGUMENT, message: /config\.metadata\.name/ },
  { name: 'metadata.name of 64 KiB', call: run({ ...pod('x'), metadata: { name: BIG, namespace: 'n', uid: 'u' } }), code: INVALID_ARGUMENT, message: /config\.metadata\.name/ },
  { name: 'metadata.namespace injecting CNI_ARGS', call: run({ ...pod('x'), metadata: { name: 'x', namespace: 'n;K8S_POD_NAME=other', uid: 'u' } }), code: INVALID_ARGUMENT, message: /config\.metadata\.namespace/ },
  { name: 'metadata.uid with NUL', call: run({ ...pod('x'), metadata: { name: 'x', namespace: 'n', uid: NUL } }), code: INVALID_ARGUMENT, message: /config\.metadata\.uid/ },
  { name: 'hostname not RFC 1123', call: run(pod('x', { hostname: 'bad_host!' })), code: INVALID_ARGUMENT, message: /config\.hostname/ },
  { name: 'log_directory relative', call: run(pod('x', { log_directory: 'var/log/pods' })), code: INVALID_ARGUMENT, message: /config\.log_directory/ },
  { name: 'log_directory with NUL', call: run(pod('x', { log_directory: '/var/log/\0pods' })), code: INVALID_ARGUMENT, message: /config\.log_directory/ },
  { name: 'dns servers: 33 entries', call: run(pod('x', { dns_config: { servers: Array.from({ length: 33 }, (_, i) => `198.18.0.${i}`) } })), code: INVALID_ARGUMENT, message: /config\.dns_config\.servers/ },
  { name: 'dns server with NUL', call: run(pod('x', { dns_config: { servers: [NUL] } })), code: INVALID_ARGUMENT, message: /config\.dns_config\.servers\[0\]/ },
  { name: 'dns server not an IP address', call: run(pod('x', { dns_config: { servers: ['resolver.example'] } })), code: INVALID_ARGUMENT, message: /config\.dns_config\.servers\[0\]/ },
  { name: 'dns search with a newline (resolv.conf injection)', call: run(pod('x', { dns_config: { searches: ['a.example\nnameserver 198.18.0.66'] } })), code: INVALID_ARGUMENT, message: /config\.dns_config\.searches\[0\]/ },
  { name: 'port_mappings container_port 70000', call: run(pod('x', { port_mappings: [{ container_port: 70000 }] })), code: INVALID_ARGUMENT, message: /config\.port_mappings\[0\]\.container_port/ },
  { name: 'port_mappings host_ip not an address', call: run(pod('x', { port_mappings: [{ container_port: 80, host_ip: '1.2.3.4; rm' }] })), code: INVALID_ARGUMENT, message: /config\.port_mappings\[0\]\.host_ip/ },
  { name: 'annotation key with NUL', call: run(pod('x', { annotations: { [NUL]: 'v' } })), code: INVALID_ARGUMENT, message: /config\.annotations/ },
  { name: 'label key of 64 KiB', call: run(pod('x', { labels: { [BIG]: 'v' } })), code: INVALID_ARGUMENT, message: /config\.labels/ },
  { name: 'runtime_handler not vmlet', call: run(pod('x'), 'runc'), code: INVALID_ARGUMENT, message: /runtime_handler/ },
  { name: 'hostNetwork pod', call: run(pod('x', { linux: { security_context: { namespace_options: { network: 'NODE' } } } })), code: INVALID_ARGUMENT, message: /hostNetwork/ },
  { name: 'cni annotation naming a path', call: run(pod('x', { annotations: { cni: '../../../etc/passwd' } })), code: INVALID_ARGUMENT, message: /cni/ },
  { name: 'Multus networks annotation: broken JSON', call: run(pod('x', { annotations: { 'k8s.v1.cni.cncf.io/networks': '[{"name":' } })), code: INVALID_ARGUMENT, message: /k8s\.v1\.cni\.cncf\.io\/networks/ },
  { name: 'Multus networks annotation: 10000-deep JSON', call: run(pod('x', { annotations: { 'k8s.v1.cni.cncf.io/networks': '['.repeat(10000) + ']'.repeat(10000) } })), code: INVALID_ARGUMENT, message: /k8s\.v1\.cni\.cncf\.io\/networks/ },

  // CreateContainer
  { name: 'CreateContainer with pod_sandbox_id empty', call: create(container(), ''), code: INVALID_ARGUMENT, message: /pod_sandbox_id/ },
  { name: 'pod_sandbox_id not hex', call: create(container(), '../zz'), code: INVALID_ARGUMENT, message: /pod_sandbox_id/ },
  { name: 'pod_sandbox_id unknown', call: create(container(), unknownId), code: NOT_FOUND, message: /sandbox/ },
  { name: 'CreateContainer without config', call: create(undefined), code: INVALID_ARGUMENT, message: /config is required/ },
  { name: 'image empty', call: create(container({ image: { image: '' } })), code: INVALID_ARGUMENT, message: /config\.image\.image/ },
  { name: 'image never pulled', call: create(container({ image: { image: 'http://127.0.0.1:9/never-pulled.qcow2' } })), code: NOT_FOUND, message: /never-pulled/ },
  { name: 'run_as_group without a user', call: create(container({ linux: { security_context: { run_as_group: { value: '10' } } } })), code: INVALID_ARGUMENT, message: /run_as_group is set without run_as_user/ },
  { name: 'seccomp profile path of no known form', call: create(container({ linux: { security_context: { seccomp_profile_path: 'custom' } } })), code: INVALID_ARGUMENT, message: /seccomp_profile_path "custom"/ },
  { name: 'container in the host PID namespace', call: create(container({ linux: { security_context: { namespace_options: { pid: 'NODE' } } } })), code: INVALID_ARGUMENT, message: /pid NODE is not supported/ },
  { name: 'hostIPC pod', call: run(pod('x', { linux: { security_context: { namespace_options: { ipc: 'NODE' } } } })), code: INVALID_ARGUMENT, message: /ipc NODE is not supported/ },
  { name: 'log_path absolute', call: create(container({ log_path: '/etc/shadow' })), code: INVALID_ARGUMENT, message: /config\.log_path/ },
  { name: 'log_path climbing out', call: create(container({ log_path: '../../etc/x.log' })), code: INVALID_ARGUMENT, message: /config\.log_path/ },
  { name: 'command with NUL', call: create(container({ command: [NUL] })), code: INVALID_ARGUMENT, message: /config\.command\[0\]/ },
  { name: 'args: 2000 entries', call: create(container({ args: Array.from({ length: 2000 }, () => 'a') })), code: INVALID_ARGUMENT, message: /config\.args/ },
  { name: 'env key empty', call: create(container({ envs: [{ key: '', value: 'v' }] })), code: INVALID_ARGUMENT, message: /config\.envs\[0\]\.key/ },
  { name: 'env value with NUL', call: create(container({ envs: [{ key: 'K', value: NUL }] })), code: INVALID_ARGUMENT, message: /config\.envs\[0\]/ },
  { name: 'working_dir with NUL', call: create(container({ working_dir: NUL })), code: INVALID_ARGUMENT, message: /config\.working_dir/ },
  { name: 'mount host_path relative', call: create(container({ mounts: [{ container_path: '/data', host_path: 'etc' }] })), code: INVALID_ARGUMENT, message: /config\.mounts\[0\]/ },
  { name: 'mount host_path with ..', call: create(container({ mounts: [{ container_path: '/data', host_path: '/tmp/../etc' }] })), code: INVALID_ARGUMENT, message: /config\.mounts\[0\]/ },
  { name: 'mount host_path missing', call: create(container({ mounts: [{ container_path: '/data', host_path: `/nonexistent-${tag}` }] })), code: INVALID_ARGUMENT, message: /config\.mounts\[0\]/ },
  { name: 'mount host_path through a symlink out of its dir', call: create(container({ mounts: [{ container_path: '/data', host_path: join(d.dir, 'escape', 'link', 'shadow') }] })), code: INVALID_ARGUMENT, message: /config\.mounts\[0\]/ },
  { name: 'mount container_path relative', call: create(container({ mounts: [{ container_path: 'data', host_path: '/tmp' }] })), code: INVALID_ARGUMENT, message: /config\.mounts\[0\]\.container_path/ },
  { name: 'mount container_path /dev/sda', call: create(container({ mounts: [{ container_path: '/dev/sda', host_path: '/tmp' }] })), code: INVALID_ARGUMENT, message: /config\.mounts\[0\]/ },
  { name: 'mount propagation bidirectional', call: create(container({ mounts: [{ container_path: '/data', host_path: '/tmp', propagation: 'PROPAGATION_BIDIRECTIONAL' }] })), code: INVALID_ARGUMENT, message: /config\.mounts\[0\].*propagation/ },
  { name: 'device /dev/null (a char device)', call: create(container({ devices: [{ host_path: '/dev/null', container_path: '/dev/null', permissions: 'rw' }] })), code: INVALID_ARGUMENT, message: /\/dev\/null/ },
  { name: 'CDI device', call: create(container({ CDI_devices: [{ name: 'vendor.com/gpu=0' }] })), code: INVALID_ARGUMENT, message: /cdi_devices/ },
  { name: 'memory limit negative', call: create(container({ linux: { resources: { memory_limit_in_bytes: '-5' } } })), code: INVALID_ARGUMENT, message: /memory_limit_in_bytes/ },
  { name: 'pod annotation VirtletVCPUCount not a number', call: createWithPodAnnotations({ VirtletVCPUCount: 'many' }), code: INVALID_ARGUMENT, message: /VirtletVCPUCount/ },
  { name: 'pod annotation VirtletDiskDriver unknown', call: createWithPodAnnotations({ VirtletDiskDriver: 'floppy' }), code: INVALID_ARGUMENT, message: /VirtletDiskDriver/ },
  { name: 'pod annotation VirtletRootVolumeSize negative', call: createWithPodAnnotations({ VirtletRootVolumeSize: '-1Gi' }), code: INVALID_ARGUMENT, message: /VirtletRootVolumeSize/ },
  { name: 'pod annotation VirtletCloudInitUserData not YAML', call: createWithPodAnnotations({ VirtletCloudInitUserData: 'a: [\n' }), code: INVALID_ARGUMENT, message: /VirtletCloudInitUserData/ },

  // Container and sandbox verbs on ids
  { name: 'StartContainer id not hex', call: () => d.runtime.StartContainer!({ container_id: 'xyz' }), code: INVALID_ARGUMENT, message: /container_id/ },
  { name: 'StartContainer unknown id', call: () => d.runtime.StartContainer!({ container_id: unknownId }), code: NOT_FOUND },
  { name: 'ContainerStatus unknown id', call: () => d.runtime.ContainerStatus!({ container_id: unknownId }), code: NOT_FOUND },
  { name: 'RemoveContainer unknown id (idempotent)', call: () => d.runtime.RemoveContainer!({ container_id: unknownId }), code: OK },
  { name: 'PodSandboxStatus unknown id', call: () => d.runtime.PodSandboxStatus!({ pod_sandbox_id: unknownId }), code: NOT_FOUND },
  { name: 'StopPodSandbox id not hex', call: () => d.runtime.StopPodSandbox!({ pod_sandbox_id: '../x' }), code: INVALID_ARGUMENT, message: /pod_sandbox_id/ },
  { name: 'RemovePodSandbox unknown id (idempotent)', call: () => d.runtime.RemovePodSandbox!({ pod_sandbox_id: unknownId }), code: OK },
  { name: 'UpdateContainerResources unknown id', call: () => d.runtime.UpdateContainerResources!({ container_id: unknownId, linux: {} }), code: NOT_FOUND },
  { name: 'ReopenContainerLog unknown id', call: () => d.runtime.ReopenContainerLog!({ container_id: unknownId }), code: NOT_FOUND },

  // Streaming requests
  { name: 'ExecSync with an empty cmd', call: () => d.runtime.ExecSync!({ container_id: unknownId, cmd: [] }), code: INVALID_ARGUMENT, message: /cmd/ },
  { name: 'ExecSync unknown container', call: () => d.runtime.ExecSync!({ container_id: unknownId, cmd: ['true'] }), code: NOT_FOUND },
  { name: 'Exec with tty and stderr', call: () => d.runtime.Exec!({ container_id: unknownId, cmd: ['sh'], tty: true, stderr: true, stdout: true }), code: INVALID_ARGUMENT, message: /tty.*stderr|stderr.*tty/ },
  { name: 'PortForward to port 70000', call: () => d.runtime.PortForward!({ pod_sandbox_id: sandboxId, port: [70000] }), code: INVALID_ARGUMENT, message: /port/ },
  { name: 'PortForward unknown sandbox', call: () => d.runtime.PortForward!({ pod_sandbox_id: unknownId, port: [22] }), code: NOT_FOUND },

  // Images
  { name: 'PullImage empty', call: () => d.image.PullImage!({ image: { image: '' } }), code: INVALID_ARGUMENT, message: /image/ },
  // Not a URL vmlet fetches nor a registry reference: a name nothing resolves, as containerd says of one.
  { name: 'PullImage file:// URL', call: () => d.image.PullImage!({ image: { image: 'file:///etc/shadow' } }), code: NOT_FOUND, message: /file:\/\/\/etc\/shadow.*neither an http\(s\) URL nor a registry reference/ },
  { name: 'PullImage name with NUL', call: () => d.image.PullImage!({ image: { image: `http://127.0.0.1/${NUL}` } }), code: INVALID_ARGUMENT, message: /image/ },
  { name: 'PullImage name of 64 KiB', call: () => d.image.PullImage!({ image: { image: `http://127.0.0.1/${BIG}` } }), code: INVALID_ARGUMENT, message: /image/ },
  { name: 'ImageStatus empty', call: () => d.image.ImageStatus!({ image: { image: '' } }), code: INVALID_ARGUMENT, message: /image/ },
  { name: 'RemoveImage unknown (idempotent)', call: () => d.image.RemoveImage!({ image: { image: `http://127.0.0.1:9/unknown-${tag}.qcow2` } }), code: OK },
];

before(async () => {
  await ensureLibvirtd();
  d = await startTestDaemon({ args: ['--kvm', 'off'] });
  rig = { dir: d.dir, stateDir: d.stateDir, bridge, ipamDir: join(d.dir, 'ipam'), imageRef: '', tag };
  writeFileSync(join(d.cniConfDir, '10-hostile.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-hostile-fields-${tag}`,
    plugins: [{ type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: rig.ipamDir, ranges: [[{ subnet: '198.19.39.0/24' }]] } }],
  }));
  // A symlink leading out of its directory, for the escape case.
  mkdirSync(join(d.dir, 'escape'));
  symlinkSync('/etc', join(d.dir, 'escape', 'link'));
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
  sandboxId = (await d.runtime.RunPodSandbox!({ config: pod('fixture') })).pod_sandbox_id;
  sandboxIds.add(sandboxId);
});

after(async () => {
  if (d && d.child.exitCode === null) {
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

test('every user-controlled CRI field: hostile values get their code and a message naming the field; serve keeps serving; nothing is left', { timeout: 600_000 }, async () => {
  const failures: string[] = [];
  for (const c of cases()) {
    let code: grpc.status = OK;
    let message = '';
    try {
      await c.call();
    } catch (err) {
      code = (err as grpc.ServiceError).code ?? grpc.status.UNKNOWN;
      message = (err as grpc.ServiceError).details ?? String(err);
    }
    if (code !== c.code) failures.push(`${c.name}: code ${grpc.status[code]} (${message.slice(0, 200)}), expected ${grpc.status[c.code]}`);
    else if (c.message && !c.message.test(message)) failures.push(`${c.name}: message ${JSON.stringify(message.slice(0, 200))} does not match ${c.message}`);
    assert.equal(d.child.exitCode, null, `serve exited after ${c.name}`);
    assert.equal(d.child.signalCode, null, `serve was killed after ${c.name}`);
  }
  assert.deepEqual(failures, [], `cases that did not get their answer:\n${failures.join('\n')}`);
  // The fixture sandbox is the only one, with no container; no VM dir, domain, netns or address of any case.
  const sandboxes = (await d.runtime.ListPodSandbox!({})).items.map((s: { id: string }) => s.id);
  assert.deepEqual(sandboxes, [sandboxId]);
  assert.deepEqual((await d.runtime.ListContainers!({})).containers, []);
  const vmDirs = existsSync(join(d.stateDir, 'vms')) ? readdirSync(join(d.stateDir, 'vms')) : [];
  assert.deepEqual(vmDirs, []);
  await d.runtime.RemovePodSandbox!({ pod_sandbox_id: sandboxId });
  for (const s of d.output().matchAll(/\b[0-9a-f]{64}\b/g)) sandboxIds.add(s[0]);
  assert.deepEqual(await countLeftovers(rig, sandboxIds), {});
  for (const id of sandboxIds) assert.ok(!existsSync(`/run/netns/${netnsNameFor(id)}`));
});
