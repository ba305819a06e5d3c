/**
 * End to end, the persistent root disk (#22) on loop devices, with the busybox guest (two boots in
 * all): a device given as container_path "/" is initialised from the image (vmlet's header, the
 * image raw after it) and booted as a raw block disk seen from after the header; a second pod with
 * the same image boots the device as it is (what was on it survives, the new pod's hostname and
 * instance-id arrive through its seed); a pod with another image re-initialises it with a warning
 * naming the device; a header of a newer version and an image larger than the device are refused
 * with nothing left.
 *
 * The busybox guest runs no commands and keeps its root in an initramfs, so it cannot write a file
 * of its own onto the disk: what "the guest wrote" is stood in for by bytes the test puts on the
 * device past the image between the pods (a real guest's writes land in the same place). A real
 * guest writing a file, a vmlet restart and the second pod's keys and address are in
 * persistent_root_guest.test.ts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, createReadStream, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startTestDaemon, grpcCode, REPO_ROOT, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { waitFor, criLines, removeAllAndStop, deleteLink, clearStaleTestSubnet } from '../../helpers/e2e.js';
import { ownDomains } from '../../helpers/own_domains.js';
import { BLOCK_GRANTS_DIR } from '../../../src/container/layout.js';
import { HEAD_BYTES, ROOT_PAYLOAD_OFFSET, decodeRootHeader } from '../../../src/container/block_devices/root_header.js';

const tag = randomBytes(3).toString('hex');
const bridge = `vpr${tag}`;
const subnet = '198.18.226';
const MIB = 1024 * 1024;
const DEVICE_BYTES = 24 * MIB;
/** Past the 15 MiB busybox image, inside the guest's view of the device. */
const MARK_AT = ROOT_PAYLOAD_OFFSET + 20 * MIB;
const MARK = Buffer.from(`written between pods ${tag}\n`);

let d: TestDaemon;
let server: Server | undefined;
let base = '';
let work = '';
let rawImage = '';
let qcowImage = '';
const loops: string[] = [];
const timings: Record<string, number> = {};
const started = performance.now();

function losetup(file: string, bytes: number): string {
  execFileSync('truncate', ['-s', String(bytes), file]);
  const dev = execFileSync('losetup', ['-f', '--show', file], { encoding: 'utf8' }).trim();
  loops.push(dev);
  return dev;
}

function readAt(dev: string, offset: number, length: number): Buffer {
  const fd = openSync(dev, 'r');
  try {
    const b = Buffer.alloc(length);
    readSync(fd, b, 0, length, offset);
    return b;
  } finally {
    closeSync(fd);
  }
}

function writeAt(dev: string, offset: number, data: Buffer): void {
  const fd = openSync(dev, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

function header(dev: string) {
  return decodeRootHeader(readAt(dev, 0, HEAD_BYTES));
}

before(async () => {
  clearStaleTestSubnet(subnet);
  await ensureLibvirtd();
  work = mkdtempSync(join(tmpdir(), 'vmlet-proot-'));
  qcowImage = execFileSync(join(REPO_ROOT, 'test-guests', 'build-busybox.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 900_000 }).trim();
  // The same guest as a raw image: another digest, and the bytes vmlet must put on the device.
  rawImage = join(work, 'guest.raw');
  execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', qcowImage, rawImage]);
  const files: Record<string, string> = { '/guest.qcow2': qcowImage, '/guest.raw': rawImage };
  server = createServer((req, res) => {
    const path = files[req.url ?? ''];
    if (!path) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': statSync(path).size });
    createReadStream(path).pipe(res);
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // One warm VM: the pods here must not take it.
  d = await startTestDaemon({ args: ['--kvm', 'off', '--vm-memory', '256Mi', '--vm-warm-pool', '1'] });
  writeFileSync(join(d.cniConfDir, '10-proot.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-proot-${tag}`,
    plugins: [{
      type: 'bridge', bridge, isGateway: true, ipMasq: false,
      ipam: { type: 'host-local', dataDir: join(d.dir, 'ipam'), ranges: [[{ subnet: `${subnet}.0/24`, gateway: `${subnet}.1` }]], routes: [{ dst: '198.18.0.0/15' }] },
    }],
  }));
});

after(async () => {
  try {
    // Its cleanup unmounts the daemon's volumes root (kept mounted across restarts) and removes its dir.
    await removeAllAndStop(d).catch(() => undefined);
  } finally {
    server?.close();
    deleteLink(bridge);
    for (const dev of loops) {
      try {
        execFileSync('losetup', ['-d', dev]);
      } catch {
        /* already detached */
      }
    }
    if (work) rmSync(work, { recursive: true, force: true });
    console.log(`# persistent root timings (ms): ${JSON.stringify({ ...timings, 'whole file': Math.round(performance.now() - started) })}`);
  }
});

let podNo = 0;
async function pod(image: string, device: string): Promise<{ sandboxId: string; id: string; logPath: string; hostname: string; ip: string; create: Promise<string> }> {
  podNo++;
  const hostname = `proot${podNo}-${tag}`;
  const logDir = join(d.dir, 'pod-logs', String(podNo));
  mkdirSync(logDir, { recursive: true });
  const config = { metadata: { name: hostname, namespace: 'default', uid: `uid-${hostname}`, attempt: 0 }, hostname, log_directory: logDir, linux: {} };
  const { pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config });
  const ip = (await d.runtime.PodSandboxStatus!({ pod_sandbox_id: sandboxId })).status.network.ip as string;
  const create = d.runtime.CreateContainer!({
    pod_sandbox_id: sandboxId,
    config: {
      metadata: { name: 'vm', attempt: 0 }, image: { image }, log_path: 'vm.log',
      devices: [{ container_path: '/', host_path: device, permissions: 'mrw' }],
    },
    sandbox_config: config,
  }).then((r: { container_id: string }) => r.container_id);
  create.catch(() => undefined);
  return { sandboxId, id: '', logPath: join(logDir, 'vm.log'), hostname, ip, create };
}

async function bootAndCheck(p: { id: string; logPath: string; hostname: string; ip: string }): Promise<void> {
  const t0 = performance.now();
  await d.runtime.StartContainer!({ container_id: p.id }, { deadlineMs: 180_000 });
  await waitFor('guest ready', 300_000, () => criLines(p.logPath).find((l) => l.text === 'VMLET-GUEST ready'));
  timings[`boot ${p.hostname.split('-')[0]}`] = Math.round(performance.now() - t0);
  const lines = criLines(p.logPath).map((l) => l.text);
  assert.ok(lines.includes(`VMLET-GUEST hostname ${p.hostname}`), `this pod's hostname arrived: ${lines.join(' | ')}`);
  assert.ok(lines.includes(`VMLET-GUEST instance-id ${p.id}`), 'this pod\'s instance-id arrived');
  assert.ok(lines.some((l) => new RegExp(`^VMLET-GUEST ip \\S+ ${p.ip.replaceAll('.', '\\.')}/\\d+$`).test(l)), `this pod's address ${p.ip} was applied: ${lines.join(' | ')}`);
}

async function removePod(p: { sandboxId: string; id: string }): Promise<void> {
  if (p.id) {
    await d.runtime.StopContainer!({ container_id: p.id, timeout: '30' }, { deadlineMs: 90_000 });
    await d.runtime.RemoveContainer!({ container_id: p.id });
  }
  await d.runtime.StopPodSandbox!({ pod_sandbox_id: p.sandboxId });
  await d.runtime.RemovePodSandbox!({ pod_sandbox_id: p.sandboxId });
}

/** This daemon's warm domains (its owner id in their metadata). */
function ownWarmDomains(): string[] {
  return ownDomains(d.stateDir, 'vmlet-warm-');
}

function ownerOf(dev: string): string {
  const st = statSync(dev);
  return `${st.uid}:${st.gid}:${(st.mode & 0o7777).toString(8)}`;
}

test('persistent root disk on a loop device: initialised, booted, kept, re-initialised for another image', { timeout: 1_500_000 }, async (t) => {
  const qcow = await d.image.PullImage!({ image: { image: `${base}/guest.qcow2` } });
  const raw = await d.image.PullImage!({ image: { image: `${base}/guest.raw` } });
  assert.notEqual(qcow.image_ref, raw.image_ref);
  const dev = losetup(join(work, 'root.img'), DEVICE_BYTES);
  const originalOwner = ownerOf(dev);
  const expectedImage = readFileSync(rawImage);
  await waitFor('the warm VM started', 180_000, () => d.output().includes('"msg":"warm VM ready"') || undefined);

  // Pod 1: a blank device is initialised from the image and booted.
  const p1 = await pod(`${base}/guest.qcow2`, dev);
  let t0 = performance.now();
  p1.id = await p1.create;
  timings['CreateContainer, 15 MiB written'] = Math.round(performance.now() - t0);
  await t.test('pod 1: the header names the image, the image is raw after it; no overlay; a cold domain with a sliced raw block disk', async () => {
    const h = header(dev);
    assert.equal(h.kind, 'vmlet');
    assert.deepEqual(h.kind === 'vmlet' && h.header, { version: 1, complete: true, payloadOffset: ROOT_PAYLOAD_OFFSET, payloadBytes: expectedImage.length, imageDigest: qcow.image_ref });
    assert.ok(readAt(dev, ROOT_PAYLOAD_OFFSET, expectedImage.length).equals(expectedImage), 'the image bytes follow the header');
    assert.equal(existsSync(join(d.stateDir, 'vms', p1.id, 'root.qcow2')), false);
    const xml = JSON.parse((await d.runtime.ContainerStatus!({ container_id: p1.id, verbose: true })).info.info).domainXml as string;
    assert.doesNotMatch(xml, /<name>vmlet-warm-/, 'a persistent root never takes the warm VM');
    assert.match(xml, new RegExp(`<disk type=["']block["'] device=["']disk["']>\\s*<driver name=["']qemu["'] type=["']raw["'] cache=["']none["'] io=["']native["']/>\\s*<source dev=["']${dev}["'][^>]*>\\s*<slices>\\s*<slice type=["']storage["'] offset=["']${ROOT_PAYLOAD_OFFSET}["'] size=["']${DEVICE_BYTES - ROOT_PAYLOAD_OFFSET}["']/>`));
    const qemu = ['-u'].map((f) => execFileSync('id', [f, 'vmlet-qemu'], { encoding: 'utf8' }).trim());
    // grants.ts: the owner becomes QEMU's user, the group is kept, mode 0600.
    assert.equal(ownerOf(dev), `${qemu[0]}:${originalOwner.split(':')[1]}:600`, 'the node is QEMU\'s user\'s while the container exists');
    assert.doesNotMatch(d.output(), /overwriting the contents of persistent root disk/);
  });
  await t.test('pod 1 boots from the device', () => bootAndCheck(p1));
  await removePod(p1);
  assert.equal(ownerOf(dev), originalOwner, 'Stop/Remove gave the node its owner and mode back');
  assert.equal(header(dev).kind, 'vmlet', 'Remove left the device alone');

  // What a guest would have written, past the image.
  writeAt(dev, MARK_AT, MARK);

  // Pod 2, same image: the device boots as it is.
  const p2 = await pod(`${base}/guest.qcow2`, dev);
  p2.id = await p2.create;
  await t.test('pod 2 (same image): nothing rewritten, the bytes on the device are kept, its own hostname and instance-id', async () => {
    assert.ok(readAt(dev, MARK_AT, MARK.length).equals(MARK));
    assert.doesNotMatch(d.output(), /overwriting the contents of persistent root disk/);
    assert.match(d.output(), /persistent root disk holds the image: booting it as it is/);
    await bootAndCheck(p2);
    assert.ok(readAt(dev, MARK_AT, MARK.length).equals(MARK), 'still there after the boot');
  });
  // A second container on a device in use is refused.
  await t.test('a device in use by a live container is refused', async () => {
    const other = await pod(`${base}/guest.qcow2`, dev);
    assert.equal(await grpcCode(other.create), 9 /* FAILED_PRECONDITION */);
    await removePod(other);
  });
  await removePod(p2);

  // Pod 3, another image (digest): re-initialised with a warning naming the device.
  const p3 = await pod(`${base}/guest.raw`, dev);
  t0 = performance.now();
  p3.id = await p3.create;
  timings['CreateContainer, re-initialised'] = Math.round(performance.now() - t0);
  await t.test('pod 3 (another image): re-initialised, the warning names the device', () => {
    const h = header(dev);
    assert.equal(h.kind === 'vmlet' && h.header.imageDigest, raw.image_ref);
    assert.ok(readAt(dev, ROOT_PAYLOAD_OFFSET, expectedImage.length).equals(expectedImage));
    const warning = d.output().split('\n').find((l) => l.includes('overwriting the contents of persistent root disk'));
    assert.ok(warning, 'a warning was logged');
    const w = JSON.parse(warning) as { level: number; device: string; msg: string };
    assert.equal(w.level, 40);
    assert.equal(w.device, dev);
    assert.match(w.msg, new RegExp(`${dev} with image ${raw.image_ref} \\(it holds image ${qcow.image_ref}\\)`));
  });
  await removePod(p3);
  assert.equal(ownerOf(dev), originalOwner);
});

test('refused: a header of a newer version (FAILED_PRECONDITION), an image larger than the device (INVALID_ARGUMENT); nothing left', { timeout: 300_000 }, async () => {
  const image = `${base}/guest.qcow2`;
  const newer = losetup(join(work, 'newer.img'), DEVICE_BYTES);
  const h = Buffer.alloc(512);
  Buffer.from('VMLET-ROOT-DISK\n').copy(h);
  h.writeUInt32LE(2, 16);
  writeAt(newer, 0, h);
  const small = losetup(join(work, 'small.img'), 8 * MIB);
  const before = { newer: readAt(newer, 0, 2 * MIB), newerOwner: ownerOf(newer), smallOwner: ownerOf(small) };

  const p = await pod(image, newer);
  await assert.rejects(p.create, (e: { code?: number; details?: string }) => e.code === 9 && /version 2, newer than this vmlet's 1/.test(e.details ?? ''));
  await removePod(p);
  const q = await pod(image, small);
  await assert.rejects(q.create, (e: { code?: number; details?: string }) => e.code === 3 && new RegExp(`does not fit on persistent root disk ${small}`).test(e.details ?? ''));
  await removePod(q);

  assert.ok(readAt(newer, 0, 2 * MIB).equals(before.newer), 'the newer device is untouched');
  assert.ok(readAt(small, 0, 8 * MIB).every((x) => x === 0), 'the small device is untouched');
  assert.equal(ownerOf(newer), before.newerOwner);
  assert.equal(ownerOf(small), before.smallOwner);
  assert.deepEqual((await d.runtime.ListContainers!({})).containers, []);
  // Each refused pod had claimed the warm VM at RunPodSandbox: it was discarded, not left behind,
  // and so were its volume exports (made by the pool under its id): what is left is the pool's.
  assert.ok(ownWarmDomains().length <= 1, `warm domains left: ${ownWarmDomains().join(', ')}`);
  await waitFor('only the pool\'s VM exports', 120_000, () => {
    const warm = ownWarmDomains().map((n) => n.slice('vmlet-warm-'.length));
    const exports = readdirSync(join(d.stateDir, 'volumes')).filter((n) => /^[0-9a-f]{64}$/.test(n));
    return exports.every((id) => warm.some((w) => id.startsWith(w))) || undefined;
  });
  assert.deepEqual(existsSync(join(d.stateDir, BLOCK_GRANTS_DIR)) ? readdirSync(join(d.stateDir, BLOCK_GRANTS_DIR)) : [], [], 'no grant record left');
});
