/**
 * Image volumes (CRI Mount.image) through the CRI, against a real `vmlet serve`, real netd and real
 * libvirtd: two images pulled over http (the root disk, qcow2; the volume, raw); CreateContainer
 * with the volume as an image mount defines a domain whose XML, read back from libvirtd, holds
 * the store's blob as a read-only file disk with the serial from container_path. StartContainer
 * starts QEMU (as vmlet's QEMU user) on it — the disks are empty, no guest boots — and the blob
 * stays byte for byte what was pulled. The image cannot be removed while the container exists;
 * an image volume whose image is not pulled is NOT_FOUND and leaves nothing. About 20 s.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { startTestDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { removeAllAndStop, waitFor } from '../../helpers/e2e.js';

const tag = randomBytes(3).toString('hex');
const bridge = `viv${tag}`;
const work = mkdtempSync(join(tmpdir(), 'vmlet-imgvol-'));
let d: TestDaemon;
let server: Server;
let rootUrl: string;
let volumeUrl: string;
let volumeBytes: Buffer;

before(async () => {
  await ensureLibvirtd();
  const root = join(work, 'root.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', root, '64M']);
  const rootBytes = readFileSync(root);
  // A raw volume with content of its own (a different blob from the root's).
  volumeBytes = Buffer.alloc(1024 * 1024);
  volumeBytes.write(`vmlet image volume ${tag}\n`);
  server = createServer((req, res) => {
    const body = req.url === '/root.qcow2' ? rootBytes : req.url === '/volume.img' ? volumeBytes : undefined;
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  rootUrl = `${base}/root.qcow2`;
  volumeUrl = `${base}/volume.img`;
  d = await startTestDaemon({ args: ['--kvm', 'off', '--vm-memory', '128Mi'] });
  writeFileSync(join(d.cniConfDir, '10-imgvol.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-imgvol-${tag}`,
    plugins: [{ type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: join(work, 'ipam'), ranges: [[{ subnet: '198.19.40.0/24' }]] } }],
  }));
  await d.image.PullImage!({ image: { image: rootUrl } });
});

after(async () => {
  await removeAllAndStop(d);
  try {
    execFileSync('ip', ['link', 'delete', bridge], { stdio: 'ignore' });
  } catch {
    /* gone */
  }
  server?.close();
  rmSync(work, { recursive: true, force: true });
});

const virshDomains = () => execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'list', '--all', '--name'], { encoding: 'utf8' }).split('\n').filter(Boolean);

test('an image mount is a read-only file disk of the blob; QEMU runs on it and never writes it; the image stays in use', { timeout: 180_000 }, async () => {
  const pod = { metadata: { name: 'imgvol', namespace: 'default', uid: `uid-imgvol-${tag}` }, hostname: 'imgvol' };
  const { pod_sandbox_id: id } = await d.runtime.RunPodSandbox!({ config: pod });
  const config = (image: string) => ({
    metadata: { name: 'vm' },
    image: { image: rootUrl },
    mounts: [{ container_path: '/data/disk', readonly: true, image: { image } }],
  });

  // Not pulled yet: NOT_FOUND naming the image, no domain, no container.
  const missing = await d.runtime.CreateContainer!({ pod_sandbox_id: id, config: config(volumeUrl), sandbox_config: pod }).then(
    () => assert.fail('CreateContainer took an image volume that was never pulled'),
    (e: grpc.ServiceError) => e,
  );
  assert.equal(missing.code, 5);
  assert.match(missing.details, new RegExp(`image volume at /data/disk: image ${volumeUrl.replace(/[.]/g, '\\.')} is not present`));
  assert.deepEqual(virshDomains().filter((n) => n.includes(id.slice(0, 12))), []);
  assert.deepEqual((await d.runtime.ListContainers!({})).containers, []);

  const { image_ref: volumeId } = await d.image.PullImage!({ image: { image: volumeUrl } });
  assert.equal(volumeId, `sha256:${createHash('sha256').update(volumeBytes).digest('hex')}`);
  const { container_id: cid } = await d.runtime.CreateContainer!({ pod_sandbox_id: id, config: config(volumeUrl), sandbox_config: pod });
  const domain = JSON.parse((await d.runtime.ContainerStatus!({ container_id: cid, verbose: true })).info.info).domain as string;
  const xml = execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'dumpxml', '--inactive', domain], { encoding: 'utf8' });
  const blob = join(d.imageDir, 'blobs', 'sha256', volumeId.slice('sha256:'.length));
  const disks = xml.match(/<disk [^>]*>[\s\S]*?<\/disk>/g) ?? [];
  const volume = disks.filter((x) => x.includes(`<source file='${blob}'`));
  assert.equal(volume.length, 1, xml);
  assert.match(volume[0]!, /<disk type='file' device='disk'>/);
  assert.match(volume[0]!, /<driver name='qemu' type='raw'\/>/);
  assert.match(volume[0]!, /<target dev='vdb' bus='virtio'\/>/);
  assert.match(volume[0]!, /<readonly\/>/);
  assert.match(volume[0]!, /<serial>disk<\/serial>/);

  await d.runtime.StartContainer!({ container_id: cid });
  const state = execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'domstate', domain], { encoding: 'utf8' }).trim();
  assert.equal(state, 'running');
  const live = execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'dumpxml', domain], { encoding: 'utf8' });
  assert.match(live, new RegExp(`<source file='${blob}'[^>]*/>[\\s\\S]*?<readonly/>`));

  const removing = await d.image.RemoveImage!({ image: { image: volumeUrl } }).then(
    () => assert.fail('RemoveImage removed an image a container mounts'),
    (e: grpc.ServiceError) => e,
  );
  assert.equal(removing.code, 9, removing.details);

  await d.runtime.StopContainer!({ container_id: cid, timeout: 0 });
  await d.runtime.RemoveContainer!({ container_id: cid });
  await waitFor('the domain gone', 30_000, async () => (virshDomains().includes(domain) ? undefined : true));
  assert.ok(readFileSync(blob).equals(volumeBytes), 'the blob is byte for byte what was pulled');
  await d.image.RemoveImage!({ image: { image: volumeUrl } });
  await d.runtime.StopPodSandbox!({ pod_sandbox_id: id });
  await d.runtime.RemovePodSandbox!({ pod_sandbox_id: id });
});
