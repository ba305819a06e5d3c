/**
 * End to end from a registry: the busybox test guest as a containerDisk in a real docker-registry
 * on 127.0.0.1 (pushed with skopeo), pulled through the CRI by tag, by digest and through a
 * mirror named in the registry config directory; a pod boots from the digest reference.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import { startTestDaemon, grpcCode, REPO_ROOT, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { waitFor, criLines, removeAllAndStop, deleteLink, clearStaleTestSubnet } from '../../helpers/e2e.js';
import { buildImage, skopeoPush, startRegistry, writeLayout, type Registry } from '../../helpers/registry.js';

const tag = randomBytes(3).toString('hex');
const bridge = `vtr${tag}`;
const subnet = '198.18.180';
let d: TestDaemon;
let registry: Registry;
let work: string;
let guest: Buffer;
let manifestDigest: string;

before(async () => {
  clearStaleTestSubnet(subnet);
  await ensureLibvirtd();
  const guestPath = execFileSync(join(REPO_ROOT, 'test-guests', 'build-busybox.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 900_000 }).trim();
  guest = readFileSync(guestPath);
  registry = await startRegistry();
  work = mkdtempSync(join(tmpdir(), 'vmlet-e2e-registry-'));
  const image = await buildImage([{ entries: [{ name: 'disk/', type: 'directory' }, { name: 'disk/guest.qcow2', content: guest }] }]);
  manifestDigest = image.manifestDigest;
  await writeLayout(join(work, 'layout'), '1', [{ image }]);
  await skopeoPush(registry, join(work, 'layout'), '1', 'vmlet/guest:1');
  // A mirror: pulls of "mirror.vmlet.test/…" are served by the loopback registry.
  const certsD = join(work, 'certs.d');
  mkdirSync(join(certsD, 'mirror.vmlet.test'), { recursive: true });
  writeFileSync(join(certsD, 'mirror.vmlet.test', 'hosts.toml'), `server = "https://mirror.vmlet.test"\n[host."http://${registry.host}"]\n  capabilities = ["pull", "resolve"]\n`);
  d = await startTestDaemon({ args: ['--kvm', 'off', '--vm-memory', '256Mi', '--registry-config-dir', certsD] });
  writeFileSync(join(d.cniConfDir, '10-e2e.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-e2e-reg-${tag}`,
    plugins: [{
      type: 'bridge', bridge, isGateway: true, ipMasq: false,
      ipam: { type: 'host-local', dataDir: join(d.dir, 'ipam'), ranges: [[{ subnet: `${subnet}.0/24`, gateway: `${subnet}.1` }]], routes: [{ dst: '198.18.0.0/15' }] },
    }],
  }));
});

after(async () => {
  await removeAllAndStop(d);
  deleteLink(bridge);
  await registry?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('a pod boots from a containerDisk pulled by tag and by digest; ListImages shows tags and digests; a mirror serves another registry name', { timeout: 900_000 }, async () => {
  const byTag = `${registry.host}/vmlet/guest:1`;
  const byDigest = `${registry.host}/vmlet/guest@${manifestDigest}`;
  const viaMirror = 'mirror.vmlet.test/vmlet/guest:1';
  const id = `sha256:${createHash('sha256').update(guest).digest('hex')}`;
  assert.equal((await d.image.PullImage!({ image: { image: byTag } })).image_ref, id);
  assert.equal((await d.image.PullImage!({ image: { image: byDigest } })).image_ref, id);
  assert.equal((await d.image.PullImage!({ image: { image: viaMirror } })).image_ref, id);
  const { images } = await d.image.ListImages!({});
  assert.equal(images.length, 1);
  assert.deepEqual([...images[0].repo_tags].sort(), [byTag, viaMirror].sort());
  assert.deepEqual([...images[0].repo_digests].sort(), [`${registry.host}/vmlet/guest@${manifestDigest}`, `mirror.vmlet.test/vmlet/guest@${manifestDigest}`].sort());
  assert.equal((await d.image.ImageStatus!({ image: { image: byDigest } })).image.id, id);

  const logDir = join(d.dir, 'pod-logs');
  mkdirSync(logDir, { recursive: true });
  const podConfig = { metadata: { name: 'reg', namespace: 'default', uid: `uid-reg-${tag}`, attempt: 0 }, hostname: 'reg-guest', log_directory: logDir, linux: {} };
  const { pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config: podConfig });
  // An image volume of a pulled containerDisk is accepted (a read-only disk of the VM; details in
  // test/integration/cri/image_volumes.test.ts); while a container mounts it, the image stays.
  const { container_id: withVolume } = await d.runtime.CreateContainer!({
    pod_sandbox_id: sandboxId,
    config: { metadata: { name: 'imgvol', attempt: 0 }, image: { image: byDigest }, mounts: [{ container_path: '/data', image: { image: byTag } }] },
    sandbox_config: podConfig,
  });
  assert.equal(await grpcCode(d.image.RemoveImage!({ image: { image: byTag } })), 9 /* FAILED_PRECONDITION: in use */);
  await d.runtime.RemoveContainer!({ container_id: withVolume });
  const { container_id: cid } = await d.runtime.CreateContainer!({
    pod_sandbox_id: sandboxId,
    config: { metadata: { name: 'vm', attempt: 0 }, image: { image: byDigest }, log_path: 'vm/0.log', linux: { resources: { memory_limit_in_bytes: String(256 * 1024 * 1024) } } },
    sandbox_config: podConfig,
  });
  await d.runtime.StartContainer!({ container_id: cid }, { deadlineMs: 180_000 });
  const status = await d.runtime.ContainerStatus!({ container_id: cid });
  assert.equal(status.status.image_ref, id);
  const logPath = join(logDir, 'vm', '0.log');
  await waitFor('guest ready', 400_000, () => criLines(logPath).find((l) => l.text === 'VMLET-GUEST ready'));
  assert.ok(criLines(logPath).some((l) => l.text === 'VMLET-GUEST hostname reg-guest'));

  // The image is in use: RemoveImage refuses; after the pod is gone it goes by tag, digest and mirror name.
  assert.equal(await grpcCode(d.image.RemoveImage!({ image: { image: id } })), 9 /* FAILED_PRECONDITION */);
  await d.runtime.StopContainer!({ container_id: cid, timeout: '30' }, { deadlineMs: 120_000 });
  await d.runtime.RemoveContainer!({ container_id: cid });
  await d.runtime.StopPodSandbox!({ pod_sandbox_id: sandboxId });
  await d.runtime.RemovePodSandbox!({ pod_sandbox_id: sandboxId });
  for (const ref of [byTag, byDigest, viaMirror, `mirror.vmlet.test/vmlet/guest@${manifestDigest}`]) await d.image.RemoveImage!({ image: { image: ref } });
  assert.deepEqual((await d.image.ListImages!({})).images, []);
});
