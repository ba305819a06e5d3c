/**
 * vmlet with a delegate: a private containerd (Debian's containerd + runc, its own root, state,
 * socket, CNI conf in 198.18.190.0/25) runs container pods; vmlet runs VM pods (CNI in
 * 198.18.190.128/25) and serves both through one socket.
 *
 * - routing: pods by runtime handler, calls by id owner (also after a vmlet restart), images by
 *   name, merged lists, delegate errors with their codes;
 * - critest v1.26.1 against containerd directly and then through vmlet, with a VM pod running
 *   beside: every spec that passes directly passes through vmlet;
 * - delegate down: container calls answer UNAVAILABLE, the VM pod is still served; delegate back:
 *   container calls work again.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import { startTestDaemon, criClient, grpcCode, type TestDaemon } from '../../helpers/daemon.js';
import { findCriTools } from '../../helpers/cri_tools.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { serveTestGuest, waitFor, removeAllAndStop, deleteLink, criLines } from '../../helpers/e2e.js';
import { startContainerd, type TestContainerd } from '../../helpers/containerd.js';
import { buildOciArchive, CRITEST_IMAGES } from '../../helpers/oci_images.js';

const critestPath = join(findCriTools(), 'critest');
const tag = randomBytes(3).toString('hex');
const ctdBridge = `vcd${tag}`;
const vmBridge = `vvm${tag}`;
const UNAVAILABLE = 14;
const NOT_FOUND = 5;

let dir: string;
let ctd: TestContainerd | undefined;
let d: TestDaemon | undefined;
let imageServer: Server | undefined;
let imageUrl: string;
let daemonArgs: string[];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vmlet-delegate-'));
  await ensureLibvirtd();
  ({ url: imageUrl, server: imageServer } = await serveTestGuest());
  ctd = await startContainerd({ dir: join(dir, 'containerd'), bridge: ctdBridge, subnet: '198.18.190.0/25', gateway: '198.18.190.1' });
  const archive = join(dir, 'images.tar');
  buildOciArchive(CRITEST_IMAGES, archive);
  ctd.ctr(['images', 'import', archive]);
  daemonArgs = ['--kvm', 'off', '--vm-memory', '256Mi', '--container-runtime-endpoint', `unix://${ctd.socket}`];
  d = await startTestDaemon({ args: daemonArgs });
  writeFileSync(join(d.cniConfDir, '10-vm.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-delegate-${tag}`,
    plugins: [{
      type: 'bridge', bridge: vmBridge, isGateway: true, ipMasq: false,
      ipam: { type: 'host-local', dataDir: join(d.dir, 'ipam'), ranges: [[{ subnet: '198.18.190.128/25', gateway: '198.18.190.129' }]], routes: [{ dst: '198.18.0.0/15' }] },
    }],
  }));
});

after(async () => {
  await removeAllAndStop(d);
  if (ctd) {
    const direct = criClient(ctd.socket);
    for (const s of (await direct.runtime.ListPodSandbox!({}).catch(() => ({ items: [] }))).items) {
      await direct.runtime.StopPodSandbox!({ pod_sandbox_id: s.id }).catch(() => {});
      await direct.runtime.RemovePodSandbox!({ pod_sandbox_id: s.id }).catch(() => {});
    }
    direct.runtime.close();
    direct.image.close();
    await ctd.stop();
  }
  imageServer?.close();
  deleteLink(ctdBridge);
  deleteLink(vmBridge);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const podConfig = (name: string, extra: object = {}) => ({
  metadata: { name, namespace: 'delegate-test', uid: `uid-${name}-${tag}`, attempt: 0 },
  log_directory: join(dir, 'logs', name),
  linux: {},
  ...extra,
});
const BUSYBOX = 'registry.k8s.io/e2e-test-images/busybox:1.29-2';

let vmPod = '';
let vmContainer = '';

test('pods go to the side their runtime handler names; calls follow the id owner, after a vmlet restart too; lists merge', { timeout: 900_000 }, async () => {
  const direct = criClient(ctd!.socket);
  try {
    // A container pod (default handler) runs in containerd, a VM pod in vmlet.
    const cPodConfig = podConfig('ctr');
    mkdirSync(cPodConfig.log_directory, { recursive: true });
    const { pod_sandbox_id: cPod } = await d!.runtime.RunPodSandbox!({ config: cPodConfig });
    const { container_id: cCtr } = await d!.runtime.CreateContainer!({
      pod_sandbox_id: cPod, sandbox_config: cPodConfig,
      config: { metadata: { name: 'top' }, image: { image: BUSYBOX }, command: ['top'], log_path: 'top.log', linux: {} },
    });
    await d!.runtime.StartContainer!({ container_id: cCtr });
    const seenDirectly = (await direct.runtime.ListPodSandbox!({})).items.map((s: { id: string }) => s.id);
    assert.deepEqual(seenDirectly, [cPod], 'containerd holds exactly the container pod');

    const vPodConfig = podConfig('vm');
    mkdirSync(vPodConfig.log_directory, { recursive: true });
    const pulled = await d!.image.PullImage!({ image: { image: imageUrl } });
    ({ pod_sandbox_id: vmPod } = await d!.runtime.RunPodSandbox!({ config: vPodConfig, runtime_handler: 'vmlet' }));
    ({ container_id: vmContainer } = await d!.runtime.CreateContainer!({
      pod_sandbox_id: vmPod, sandbox_config: vPodConfig,
      config: { metadata: { name: 'vm' }, image: { image: imageUrl }, log_path: 'vm.log', linux: {} },
    }));
    await d!.runtime.StartContainer!({ container_id: vmContainer }, { deadlineMs: 180_000 });
    assert.ok(!(await direct.runtime.ListPodSandbox!({})).items.some((s: { id: string }) => s.id === vmPod), 'the VM pod is not in containerd');

    // Merged lists hold both sides; filters by id answer from the owner only.
    const pods = (await d!.runtime.ListPodSandbox!({})).items.map((s: { id: string }) => s.id).sort();
    assert.deepEqual(pods, [cPod, vmPod].sort());
    const ctrs = (await d!.runtime.ListContainers!({})).containers.map((c: { id: string }) => c.id).sort();
    assert.deepEqual(ctrs, [cCtr, vmContainer].sort());
    assert.deepEqual((await d!.runtime.ListContainers!({ filter: { pod_sandbox_id: cPod } })).containers.map((c: { id: string }) => c.id), [cCtr]);
    assert.deepEqual((await d!.runtime.ListContainers!({ filter: { pod_sandbox_id: vmPod } })).containers.map((c: { id: string }) => c.id), [vmContainer]);
    const stats = (await d!.runtime.ListContainerStats!({})).stats.map((s: { attributes: { id: string } }) => s.attributes.id).sort();
    assert.deepEqual(stats, [cCtr, vmContainer].sort());
    const images = (await d!.image.ListImages!({})).images.map((i: { id: string }) => i.id);
    assert.ok(images.includes(pulled.image_ref), 'the VM image is listed');
    assert.ok((await d!.image.ListImages!({})).images.some((i: { repo_tags: string[] }) => i.repo_tags.includes(BUSYBOX)), 'the OCI image is listed');
    assert.equal((await d!.image.ImageFsInfo!({})).image_filesystems.length, 2, 'one image filesystem per side');
    // Images route by name: an OCI name to containerd, the URL to vmlet.
    assert.ok((await d!.image.ImageStatus!({ image: { image: BUSYBOX } })).image.repo_tags.includes(BUSYBOX));
    assert.equal((await d!.image.ImageStatus!({ image: { image: imageUrl } })).image.id, pulled.image_ref);

    // The delegate's failures keep their codes.
    assert.equal(await grpcCode(d!.runtime.PodSandboxStatus!({ pod_sandbox_id: 'f'.repeat(64) })), NOT_FOUND);
    assert.equal(await grpcCode(d!.runtime.CreateContainer!({
      pod_sandbox_id: cPod, sandbox_config: cPodConfig,
      config: { metadata: { name: 'missing' }, image: { image: 'vmlet.test/not-imported:1' }, linux: {} },
    })), NOT_FOUND);
    // Exec in a container pod answers containerd's streaming URL; ExecSync runs there.
    const exec = await d!.runtime.ExecSync!({ container_id: cCtr, cmd: ['echo', 'through-vmlet'], timeout: '10' });
    assert.equal(Buffer.from(exec.stdout).toString(), 'through-vmlet\n');
    assert.match((await d!.runtime.Exec!({ container_id: cCtr, cmd: ['sh'], stdout: true })).url, /^http:\/\/127\.0\.0\.1:\d+\/exec\//);

    // After a restart vmlet still knows which ids are its own: its records persist; the rest is containerd's.
    assert.equal(await d!.stop(), 0);
    d = await startTestDaemon({ dir: d!.dir, args: daemonArgs });
    const cStatus = await d.runtime.PodSandboxStatus!({ pod_sandbox_id: cPod });
    // proto3 leaves the zero enum value (SANDBOX_READY) off the wire.
    assert.equal(cStatus.status.state ?? 'SANDBOX_READY', 'SANDBOX_READY');
    assert.match(cStatus.status.network.ip, /^198\.18\.190\.([2-9]|[1-9]\d|1[01]\d|12[0-7])$/, 'container pod IP from containerd\'s network');
    const vStatus = await d.runtime.PodSandboxStatus!({ pod_sandbox_id: vmPod });
    assert.equal(vStatus.status.runtime_handler, 'vmlet');
    assert.match(vStatus.status.network.ip, /^198\.18\.190\.(1[3-9]\d|2\d\d)$/, 'VM pod IP from vmlet\'s network');
    assert.equal((await d.runtime.ContainerStatus!({ container_id: cCtr })).status.state, 'CONTAINER_RUNNING');
    assert.equal((await d.runtime.ContainerStatus!({ container_id: vmContainer })).status.state, 'CONTAINER_RUNNING');

    // Removing the container pod through vmlet removes it from containerd.
    await d.runtime.StopPodSandbox!({ pod_sandbox_id: cPod });
    await d.runtime.RemovePodSandbox!({ pod_sandbox_id: cPod });
    assert.deepEqual((await direct.runtime.ListPodSandbox!({})).items, []);
    // Version answers for vmlet.
    assert.equal((await d.runtime.Version!({})).runtime_name, 'vmlet');
  } finally {
    direct.runtime.close();
    direct.image.close();
  }
});

interface SpecResult {
  name: string;
  state: string;
}

function runCritest(endpoint: string, reportPath: string): Promise<SpecResult[]> {
  return new Promise((resolve, reject) => {
    const args = [
      `--runtime-endpoint=${endpoint}`, `--image-endpoint=${endpoint}`,
      `--ginkgo.json-report=${reportPath}`, '--ginkgo.no-color', '--ginkgo.timeout=40m',
    ];
    execFile(critestPath, args, { timeout: 45 * 60_000, maxBuffer: 64 * 1024 * 1024, cwd: dir }, (err, stdout) => {
      if (!existsSync(reportPath)) {
        reject(new Error(`critest wrote no report (${err?.message}):\n${stdout.slice(-4000)}`));
        return;
      }
      const suites = JSON.parse(readFileSync(reportPath, 'utf8')) as { SpecReports?: { ContainerHierarchyTexts?: string[]; LeafNodeText?: string; LeafNodeType?: string; State: string }[] }[];
      const specs = suites.flatMap((s) => s.SpecReports ?? [])
        .filter((r) => r.LeafNodeType === 'It')
        .map((r) => ({ name: [...(r.ContainerHierarchyTexts ?? []), r.LeafNodeText ?? ''].join(' '), state: r.State }));
      resolve(specs);
    });
  });
}

test('critest v1.26.1: every spec that passes against containerd directly passes through vmlet, with a VM pod running beside', { timeout: 100 * 60_000 }, async () => {
  assert.ok(vmContainer, 'the routing test left a running VM pod');
  const directSpecs = await runCritest(`unix://${ctd!.socket}`, join(dir, 'critest-direct.json'));
  const viaSpecs = await runCritest(`unix://${d!.socket}`, join(dir, 'critest-vmlet.json'));
  const passed = (specs: SpecResult[]) => specs.filter((s) => s.state === 'passed').map((s) => s.name).sort();
  const directPassed = passed(directSpecs);
  const viaPassed = passed(viaSpecs);
  const summary = {
    direct: { passed: directPassed.length, total: directSpecs.length, failed: directSpecs.filter((s) => s.state === 'failed').map((s) => s.name) },
    throughVmlet: { passed: viaPassed.length, total: viaSpecs.length, failed: viaSpecs.filter((s) => s.state === 'failed').map((s) => s.name) },
  };
  // The measured pass lists, for the record.
  console.log(JSON.stringify({ summary, directPassed, viaPassed }, null, 2));
  assert.ok(directPassed.length > 30, `critest passes most specs against containerd directly (${directPassed.length})`);
  const lost = directPassed.filter((n) => !viaPassed.includes(n));
  assert.deepEqual(lost, [], 'specs that pass directly but not through vmlet');

  // The VM pod ran through it all and still runs; critest left no pod behind on either side.
  assert.equal((await d!.runtime.ContainerStatus!({ container_id: vmContainer })).status.state, 'CONTAINER_RUNNING');
  const left = (await d!.runtime.ListPodSandbox!({})).items.map((s: { id: string }) => s.id);
  assert.deepEqual(left, [vmPod]);
});

test('delegate down: container calls answer UNAVAILABLE, the VM pod is still served; delegate back: container pods run again', { timeout: 600_000 }, async () => {
  assert.ok(vmContainer);
  const ctdDir = ctd!.dir;
  await ctd!.stop();
  ctd = undefined;
  assert.equal(await grpcCode(d!.runtime.RunPodSandbox!({ config: podConfig('down') })), UNAVAILABLE);
  assert.equal(await grpcCode(d!.runtime.PodSandboxStatus!({ pod_sandbox_id: 'e'.repeat(64) })), UNAVAILABLE);
  assert.equal(await grpcCode(d!.image.PullImage!({ image: { image: BUSYBOX } })), UNAVAILABLE);
  // VM pod calls and the merged lists still answer.
  assert.equal((await d!.runtime.ContainerStatus!({ container_id: vmContainer })).status.state, 'CONTAINER_RUNNING');
  assert.deepEqual((await d!.runtime.ListPodSandbox!({})).items.map((s: { id: string }) => s.id), [vmPod]);
  assert.deepEqual((await d!.runtime.ListContainers!({})).containers.map((c: { id: string }) => c.id), [vmContainer]);
  const status = await d!.runtime.Status!({});
  const runtimeReady = status.status.conditions.find((c: { type: string }) => c.type === 'RuntimeReady');
  assert.equal(runtimeReady.status, false);
  assert.equal(runtimeReady.reason, 'ContainerRuntimeUnavailable');
  assert.ok(criLines(join(dir, 'logs', 'vm', 'vm.log')).length > 0, 'the VM console keeps logging');

  // The same containerd comes back; within the client's reconnect backoff container pods run again.
  ctd = await startContainerd({ dir: ctdDir, bridge: ctdBridge, subnet: '198.18.190.0/25', gateway: '198.18.190.1' });
  const cfg = podConfig('back');
  mkdirSync(cfg.log_directory, { recursive: true });
  const back = await waitFor('container pods through vmlet again', 30_000, async () =>
    d!.runtime.RunPodSandbox!({ config: cfg }).then((r: { pod_sandbox_id: string }) => r.pod_sandbox_id, () => undefined));
  assert.equal((await d!.runtime.PodSandboxStatus!({ pod_sandbox_id: back })).status.state ?? 'SANDBOX_READY', 'SANDBOX_READY');
  const ready = (await d!.runtime.Status!({})).status.conditions.find((c: { type: string }) => c.type === 'RuntimeReady');
  assert.equal(ready.status, true);
  await d!.runtime.StopPodSandbox!({ pod_sandbox_id: back });
  await d!.runtime.RemovePodSandbox!({ pod_sandbox_id: back });
});
