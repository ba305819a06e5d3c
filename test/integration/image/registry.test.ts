/**
 * containerDisk pulls from a real registry (Debian's docker-registry) with images the test
 * builds as OCI layouts and pushes with skopeo (or the distribution API where skopeo would
 * refuse the document). Hostile images each get their own error and leave nothing behind.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, unlink, writeFile, readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CancelledError,
  FailedPreconditionError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
} from '../../../src/errors.js';
import { makeQcow2, makeRaw, serveBody, sha256Hex, startImageServer, type ImageServer } from '../../helpers/image_server.js';
import {
  apiPush,
  buildImage,
  digestOf,
  skopeoPush,
  startRegistry,
  writeLayout,
  type BuiltImage,
  type LayerSpec,
  type Registry,
} from '../../helpers/registry.js';
import { makeStore, type StoreFixture } from './fixture.js';
import { UNPACK_BLOCK_BYTES } from '../../../src/image/registry/layer_unpacker.js';

let registry: Registry;
let work: string;
let qcow: Buffer;

before(async () => {
  registry = await startRegistry();
  work = await mkdtemp(join(tmpdir(), 'vmlet-oci-test-'));
  qcow = await makeQcow2(1024 * 1024);
});
after(async () => {
  await registry?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

let layoutSeq = 0;
async function push(repoTag: string, images: { image: BuiltImage; architecture?: string }[], reg: Registry = registry): Promise<string> {
  const dir = join(work, `layout-${layoutSeq++}`);
  const { topDigest } = await writeLayout(dir, 'x', images);
  await skopeoPush(reg, dir, 'x', repoTag, { all: images.length > 1 });
  return topDigest;
}

async function pushLayers(repoTag: string, layers: LayerSpec[]): Promise<BuiltImage> {
  const image = await buildImage(layers);
  await push(repoTag, [{ image }]);
  return image;
}

async function assertNothingLeft(f: StoreFixture): Promise<void> {
  assert.deepEqual(await f.tmpNames(), [], 'temp files left');
  assert.deepEqual(await f.blobNames(), [], 'blobs left');
  assert.deepEqual(f.store.list(), []);
}

test('pull by tag and by digest: disk-content id, containerd-style tags and digests, shared with an http image, removable every way', async (t) => {
  const f = await makeStore(t);
  const image = await pushLayers('vmlet/guest:1', [{ entries: [{ name: 'disk/', type: 'directory' }, { name: 'disk/disk.qcow2', content: qcow }] }]);
  const name = `${registry.host}/vmlet/guest:1`;
  const rec = await f.store.pull(name);
  const id = `sha256:${sha256Hex(qcow)}`;
  assert.equal(rec.id, id, 'the image id is the digest of the disk');
  assert.deepEqual(rec.repoTags, [name]);
  assert.deepEqual(rec.repoDigests, [`${registry.host}/vmlet/guest@${image.manifestDigest}`]);
  assert.equal(rec.format, 'qcow2');
  assert.equal(rec.size, BigInt(qcow.length));
  assert.equal(rec.sourceUrl, `oci://${registry.host}/vmlet/guest@${image.manifestDigest}`);
  assert.deepEqual(await readFile(f.store.blobPath(id)), qcow);

  // Re-pull: same id, no layer download (the manifest digest is known).
  const again = await f.store.pull(name);
  assert.equal(again.id, id);
  assert.ok(f.logs.some((l) => l.msg === 'image manifest unchanged; kept the local copy'));

  // By digest: found locally without the network, and by every form.
  const byDigest = `${registry.host}/vmlet/guest@${image.manifestDigest}`;
  assert.equal((await f.store.pull(byDigest)).id, id);
  for (const ref of [name, byDigest, id, id.slice(7)]) assert.equal(f.store.status(ref)?.id, id, ref);

  // The same disk over http is the same image: one blob, both names.
  const server: ImageServer = await startImageServer();
  try {
    server.route('/guest.qcow2', serveBody(qcow));
    const http = await f.store.pull(`${server.httpBase}/guest.qcow2`);
    assert.equal(http.id, id);
    assert.deepEqual(await f.blobNames(), [id.slice(7)]);
    assert.equal(f.store.list().length, 1);
    assert.deepEqual(f.store.status(id)?.repoTags.sort(), [`${server.httpBase}/guest.qcow2:latest`, name].sort());
  } finally {
    await server.close();
  }

  // RemoveImage by tag, then digest, then id.
  await f.store.remove(name);
  assert.equal(f.store.status(name), undefined);
  assert.equal(f.store.status(byDigest)?.id, id);
  await f.store.remove(byDigest);
  assert.equal(f.store.status(byDigest), undefined);
  assert.equal(f.store.status(id)?.id, id, 'the http name still holds the image');
  await f.store.remove(id);
  await assertNothingLeft(f);

  // The id is stable across a pull from scratch.
  assert.equal((await f.store.pull(byDigest)).id, id);
  await f.store.remove(id);
});

test('a multi-arch index resolves to linux/amd64; repo digest is the index digest; raw disk, uncompressed layers, whiteouts across layers', async (t) => {
  const f = await makeStore(t);
  const raw = makeRaw(2 * 1024 * 1024, 'amd64 disk');
  const amd64 = await buildImage([
    { entries: [{ name: 'disk/old.img', content: makeRaw(512 * 4, 'old') }, { name: 'etc/hostname', content: Buffer.from('x\n') }], gzip: false },
    { entries: [{ name: 'disk/.wh.old.img' }, { name: 'disk/disk.img', content: raw }] },
  ]);
  const arm64 = await buildImage([{ entries: [{ name: 'disk/disk.img', content: makeRaw(512 * 8, 'arm64 disk') }] }], { architecture: 'arm64' });
  const indexDigest = await push('vmlet/multi:2', [
    { image: arm64, architecture: 'arm64' },
    { image: amd64, architecture: 'amd64' },
  ]);
  const rec = await f.store.pull(`${registry.host}/vmlet/multi:2`);
  assert.equal(rec.id, `sha256:${sha256Hex(raw)}`);
  assert.equal(rec.format, 'raw');
  assert.deepEqual(rec.repoDigests, [`${registry.host}/vmlet/multi@${indexDigest}`]);
  assert.ok(f.logs.some((l) => l.msg === 'image pulled' && l.disk === '/disk/disk.img'));
});

test('Docker schema 2 media types pushed over the API', async (t) => {
  const f = await makeStore(t);
  const image = await buildImage([{ entries: [{ name: './disk/guest.qcow2', content: qcow }] }], { docker: true });
  await apiPush(registry, 'vmlet/docker', 'v1', [image.config, ...image.layers.map((l) => l.blob)], image.manifest, 'application/vnd.docker.distribution.manifest.v2+json');
  const rec = await f.store.pull(`${registry.host}/vmlet/docker:v1`);
  assert.equal(rec.id, `sha256:${sha256Hex(qcow)}`);
  assert.deepEqual(rec.repoDigests, [`${registry.host}/vmlet/docker@${image.manifestDigest}`]);
});

test('hostile containerDisks: each refused with its own error, nothing left behind', async (t) => {
  const backing = await makeQcow2(1024 * 1024, { backingFile: '/etc/shadow' });
  const cases: { repo: string; layers: LayerSpec[]; error: RegExp }[] = [
    { repo: 'bad/two', layers: [{ entries: [{ name: 'disk/a.qcow2', content: qcow }, { name: 'disk/b.qcow2', content: qcow }] }], error: /2 files under \/disk\/ \(\/disk\/a\.qcow2, \/disk\/b\.qcow2\)/ },
    { repo: 'bad/none', layers: [{ entries: [{ name: 'etc/disk.qcow2', content: qcow }] }], error: /no regular file under \/disk\// },
    { repo: 'bad/symlink', layers: [{ entries: [{ name: 'disk/disk.qcow2', type: 'symlink', linkname: '/etc/shadow' }] }], error: /\/disk\/disk\.qcow2 is a symbolic link/ },
    { repo: 'bad/backing', layers: [{ entries: [{ name: 'disk/disk.qcow2', content: backing }] }], error: /qcow2 image has a backing file/ },
    { repo: 'bad/whiteout', layers: [{ entries: [{ name: 'disk/disk.qcow2', content: qcow }] }, { entries: [{ name: 'disk/.wh.disk.qcow2' }] }], error: /no regular file under \/disk\// },
  ];
  for (const c of cases) {
    const f = await makeStore(t);
    await pushLayers(`${c.repo}:1`, c.layers);
    await assert.rejects(f.store.pull(`${registry.host}/${c.repo}:1`), (err: Error) => {
      assert.ok(err instanceof FailedPreconditionError, `${c.repo}: ${err}`);
      assert.match(err.message, c.error, c.repo);
      return true;
    });
    await assertNothingLeft(f);
  }
});

test('a layer whose content does not match its digest, a missing blob, a 1 TB size claim', async (t) => {
  const disk = makeRaw(4 * 1024 * 1024, 'tampered');
  // Tampered layer: the registry's stored blob is changed after the push.
  const tampered = await pushLayers('bad/digest:1', [{ entries: [{ name: 'disk/disk.img', content: disk }], gzip: false }]);
  const layer = tampered.layers[0]!;
  const evil = Buffer.from(layer.blob);
  evil[evil.length - 2048] ^= 0xff; // inside the tar's end padding: still a valid tar
  await writeFile(registry.blobDataPath(layer.digest), evil);
  {
    const f = await makeStore(t);
    await assert.rejects(f.store.pull(`${registry.host}/bad/digest:1`), (err: Error) => {
      assert.ok(err instanceof FailedPreconditionError, String(err));
      assert.match(err.message, new RegExp(`layer ${layer.digest} has digest sha256:[0-9a-f]{64}, not the ${layer.digest} its manifest names`));
      return true;
    });
    await assertNothingLeft(f);
  }
  // The same with a layer that fills the unpacking ring many times over.
  const bigDisk = Buffer.concat([makeRaw(512, 'tampered-big'), randomBytes(16 * UNPACK_BLOCK_BYTES)]);
  const bigTampered = await pushLayers('bad/digest-big:1', [{ entries: [{ name: 'disk/disk.img', content: bigDisk }], gzip: false }]);
  const bigLayer = bigTampered.layers[0]!;
  const bigEvil = Buffer.from(bigLayer.blob);
  bigEvil[bigEvil.length - 2048] ^= 0xff;
  await writeFile(registry.blobDataPath(bigLayer.digest), bigEvil);
  {
    const f = await makeStore(t);
    await assert.rejects(f.store.pull(`${registry.host}/bad/digest-big:1`), (err: Error) => {
      assert.ok(err instanceof FailedPreconditionError, String(err));
      assert.match(err.message, new RegExp(`layer ${bigLayer.digest} has digest sha256:[0-9a-f]{64}, not the ${bigLayer.digest} its manifest names`));
      return true;
    });
    await assertNothingLeft(f);
  }

  // Missing blob: pushed, then deleted from the registry's storage.
  const missing = await pushLayers('bad/missing:1', [{ entries: [{ name: 'disk/disk.img', content: makeRaw(8192, 'missing') }] }]);
  await unlink(registry.blobDataPath(missing.layers[0]!.digest));
  {
    const f = await makeStore(t);
    await assert.rejects(f.store.pull(`${registry.host}/bad/missing:1`), (err: Error) => {
      assert.ok(err instanceof NotFoundError || err instanceof UnavailableError, String(err));
      assert.match(err.message, new RegExp(`blob ${missing.layers[0]!.digest}`));
      return true;
    });
    await assertNothingLeft(f);
  }

  // 1 TB size claim: a manifest pushed over the API with an honest blob but a huge size.
  const small = await buildImage([{ entries: [{ name: 'disk/disk.img', content: makeRaw(8192, 'huge') }] }]);
  const doc = JSON.parse(small.manifest.toString()) as { layers: { size: number }[] };
  doc.layers[0]!.size = 10 ** 12;
  const hugeManifest = Buffer.from(JSON.stringify(doc));
  await apiPush(registry, 'bad/huge', '1', [small.config, small.layers[0]!.blob], hugeManifest, 'application/vnd.oci.image.manifest.v1+json');
  {
    const f = await makeStore(t, { maxImageBytes: 64 * 2 ** 30 });
    await assert.rejects(f.store.pull(`${registry.host}/bad/huge:1`), (err: Error) => {
      assert.ok(err instanceof ResourceExhaustedError, String(err));
      assert.match(err.message, /announce 1000000000000 bytes, more than the maximum image size \(--max-image-size\) of 68719476736 bytes/);
      return true;
    });
    await assertNothingLeft(f);
  }
  assert.equal(digestOf(hugeManifest).length, 71);
});

test('two concurrent pulls share one download; a cancelled pull leaves nothing', async (t) => {
  const big = Buffer.concat([makeRaw(512, 'big'), randomBytes(48 * 1024 * 1024 - 512)]);
  await pushLayers('vmlet/big:1', [{ entries: [{ name: 'disk/disk.img', content: big }], gzip: false }]);
  const name = `${registry.host}/vmlet/big:1`;
  {
    const f = await makeStore(t);
    const [a, b] = await Promise.all([f.store.pull(name), f.store.pull(name)]);
    assert.equal(a.id, b.id);
    assert.equal(f.logs.filter((l) => l.msg === 'pulling containerDisk image').length, 1);
    await f.store.remove(a.id);
  }
  {
    const f = await makeStore(t, { progressIntervalMs: 0 });
    const ctl = new AbortController();
    const pull = f.store.pull(name, { signal: ctl.signal });
    const started = Date.now();
    while (!f.logs.some((l) => l.msg === 'image download progress') && Date.now() - started < 20_000) await new Promise((r) => setTimeout(r, 2));
    ctl.abort();
    await assert.rejects(pull, CancelledError);
    const progress = f.logs.find((l) => l.msg === 'image download progress')!;
    assert.equal(progress.totalBytes, (await readFile(registry.blobDataPath(digestOf(await tarOfBig(big))))).length);
    await assertNothingLeft(f);
  }
});

// The uncompressed layer is the tar itself; its size is what progress reports as the total.
async function tarOfBig(big: Buffer): Promise<Buffer> {
  const { tarOf } = await import('../../helpers/registry.js');
  return tarOf([{ name: 'disk/disk.img', content: big }]);
}

test('htpasswd + TLS registry: CA and credentials from hosts.toml and AuthConfig; a mirror serves another registry name', async (t) => {
  const secure = await startRegistry({ tls: true, htpasswd: { username: 'vm', password: 's3cret' } });
  t.after(() => secure.close());
  const image = await buildImage([{ entries: [{ name: 'disk/disk.qcow2', content: qcow }] }]);
  await push('private/guest:1', [{ image }], secure);
  const name = `${secure.host}/private/guest:1`;
  const configDir = join(work, `certs.d-${layoutSeq++}`);
  const hostDir = join(configDir, secure.host);
  await mkdir(hostDir, { recursive: true });

  // Without the CA: the server certificate is not trusted.
  {
    const f = await makeStore(t, { registryConfigDir: configDir });
    await assert.rejects(f.store.pull(name, { credentials: { kind: 'basic', username: 'vm', password: 's3cret' } }), (err: Error) => {
      assert.ok(err instanceof UnavailableError, String(err));
      assert.match(err.message, /certificate/);
      return true;
    });
    await assertNothingLeft(f);
  }
  await writeFile(join(hostDir, 'ca.pem'), secure.ca!.caPem);
  await writeFile(join(hostDir, 'hosts.toml'), `server = "https://${secure.host}"\nca = "ca.pem"\n`);
  {
    const f = await makeStore(t, { registryConfigDir: configDir });
    await assert.rejects(f.store.pull(name), (err: Error) => {
      assert.ok(err instanceof FailedPreconditionError, String(err));
      assert.match(err.message, /requires a username and password.*no credentials/);
      return true;
    });
    await assert.rejects(f.store.pull(name, { credentials: { kind: 'basic', username: 'vm', password: 'wrong' } }), /credentials were refused/);
    const rec = await f.store.pull(name, { credentials: { kind: 'basic', username: 'vm', password: 's3cret' } });
    assert.equal(rec.id, `sha256:${sha256Hex(qcow)}`);
    assert.deepEqual(rec.repoDigests, [`${secure.host}/private/guest@${image.manifestDigest}`]);
  }
  // skip_verify instead of the CA.
  await writeFile(join(hostDir, 'hosts.toml'), `server = "https://${secure.host}"\nskip_verify = true\n`);
  {
    const f = await makeStore(t, { registryConfigDir: configDir });
    const rec = await f.store.pull(name, { credentials: { kind: 'basic', username: 'vm', password: 's3cret' } });
    assert.equal(rec.id, `sha256:${sha256Hex(qcow)}`);
  }

  // A mirror: "registry.vmlet.test" does not exist; its hosts.toml sends pulls to the loopback registry.
  await push('vmlet/mirrored:3', [{ image }]);
  await mkdir(join(configDir, 'registry.vmlet.test'), { recursive: true });
  await writeFile(
    join(configDir, 'registry.vmlet.test', 'hosts.toml'),
    `server = "https://registry.vmlet.test"\n\n[host."http://${registry.host}"]\n  capabilities = ["pull", "resolve"]\n`,
  );
  {
    const f = await makeStore(t, { registryConfigDir: configDir });
    const rec = await f.store.pull('registry.vmlet.test/vmlet/mirrored:3');
    assert.equal(rec.id, `sha256:${sha256Hex(qcow)}`);
    assert.deepEqual(rec.repoTags, ['registry.vmlet.test/vmlet/mirrored:3']);
    assert.deepEqual(rec.repoDigests, [`registry.vmlet.test/vmlet/mirrored@${image.manifestDigest}`]);
  }
});
