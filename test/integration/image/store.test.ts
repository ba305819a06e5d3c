import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InternalError, NotFoundError } from '../../../src/errors.js';
import { ImageStore } from '../../../src/image/store.js';
import { makeQcow2, makeRaw, serveBody, sha256Hex, startImageServer, type ImageServer } from '../../helpers/image_server.js';
import { captureLogger, makeStore } from './fixture.js';

let server: ImageServer;
let qcowA: Buffer;
let qcowB: Buffer;

before(async () => {
  server = await startImageServer();
  qcowA = await makeQcow2(1024 * 1024);
  qcowB = await makeQcow2(3 * 1024 * 1024);
  server.route('/s/a.qcow2', serveBody(qcowA));
  server.route('/s/b.qcow2', serveBody(qcowB));
});
after(async () => {
  await server.close();
});

const idA = (): string => `sha256:${sha256Hex(qcowA)}`;
const idB = (): string => `sha256:${sha256Hex(qcowB)}`;

test('translation dir: missing at start, created, then changed — picked up without a restart', async (t) => {
  const f = await makeStore(t, { createTranslationsDir: false });
  await assert.rejects(f.store.pull('live'), (err: unknown) => {
    assert.ok(err instanceof NotFoundError, String(err));
    assert.ok(err.message.includes(f.translationsDir));
    return true;
  });
  await f.writeTranslation('live.yaml', `translations:\n  - name: live\n    url: ${server.httpBase}/s/a.qcow2\n`);
  assert.equal((await f.store.pull('live')).id, idA());

  // Same file rewritten (an editor's save) and a new file added.
  await f.writeTranslation('live.yaml', `translations:\n  - name: live\n    url: ${server.httpBase}/s/b.qcow2\n`);
  await f.writeTranslation('more.yml', `prefix: extra\ntranslations:\n  - name: other\n    url: ${server.httpBase}/s/a.qcow2\n`);
  assert.equal((await f.store.pull('live')).id, idB());
  assert.equal((await f.store.pull('extra/other')).id, idA());

  // A ConfigMap-style swap: the file is replaced by rename, keeping size and maybe mtime.
  const tmp = join(f.translationsDir, '.swap');
  await writeFile(tmp, `translations:\n  - name: live\n    url: ${server.httpBase}/s/a.qcow2\n`);
  await rename(tmp, join(f.translationsDir, 'live.yaml'));
  assert.equal((await f.store.pull('live')).id, idA());

  // Removing the directory again makes the names unknown once more.
  await rm(f.translationsDir, { recursive: true });
  await assert.rejects(f.store.pull('live:latest'), NotFoundError);
  // The images pulled before stay.
  assert.equal(f.store.status('live')?.id, idA());
  assert.equal(f.store.status('extra/other')?.id, idA());
});

test('restart: a new store on the same dir knows every image and cleans crash leftovers', async (t) => {
  const f = await makeStore(t);
  await f.writeTranslation('r.yaml', `translations:\n  - name: a\n    url: ${server.httpBase}/s/a.qcow2\n`);
  await f.store.pull('a');
  await f.store.pull(`${server.httpBase}/s/b.qcow2@${idB()}`);
  const before = f.store.list();
  assert.equal(before.length, 2);

  await f.store.close();
  // What a crash could leave: a half download, a torn index write, an unnamed blob.
  await writeFile(join(f.imageDir, 'tmp', '.tmp-pull-deadbeef'), 'partial');
  await writeFile(join(f.imageDir, '.tmp-images.json.123456'), '{"version":1,"ima');
  const orphan = 'c'.repeat(64);
  await writeFile(join(f.imageDir, 'blobs', 'sha256', orphan), 'unnamed');

  const again = await f.reopen();
  assert.deepEqual(again.list(), before);
  assert.equal(again.status('a')?.id, idA());
  assert.deepEqual(await f.blobNames(), [idA().slice(7), idB().slice(7)].sort());
  assert.deepEqual(await f.tmpNames(), []);
  await assert.rejects(stat(join(f.imageDir, '.tmp-images.json.123456')), /ENOENT/);
  assert.deepEqual(await readFile(again.blobPath(idA())), qcowA);
});

test('a damaged index stops init and deletes nothing', async (t) => {
  const f = await makeStore(t);
  await f.store.pull(`${server.httpBase}/s/a.qcow2`);
  await f.store.close();
  await writeFile(join(f.imageDir, 'images.json'), '{"version":1,"images":[{"id":"../../x"}]}');
  const store = new ImageStore({ imageDir: f.imageDir, logger: captureLogger([]) });
  await assert.rejects(store.init(), InternalError);
  assert.deepEqual(await f.blobNames(), [idA().slice(7)]);
  f.store = store; // closing an uninitialized-but-failed store is a no-op
});

test('remove: by name untags, by id removes all, idempotent, blob deleted when unnamed', async (t) => {
  const f = await makeStore(t);
  await f.writeTranslation(
    'rm.yaml',
    `translations:\n  - name: one\n    url: ${server.httpBase}/s/a.qcow2\n  - name: two:v1\n    url: ${server.httpBase}/s/a.qcow2\n  - name: three\n    url: ${server.httpBase}/s/b.qcow2\n`,
  );
  await f.store.pull('one');
  await f.store.pull('two:v1');
  await f.store.pull(`two@${idA()}`);
  assert.deepEqual(f.store.status(idA())?.repoTags.sort(), ['one:latest', 'two:v1']);
  assert.deepEqual(f.store.status(idA())?.repoDigests, [`two@${idA()}`]);

  await f.store.remove('one');
  assert.equal(f.store.status('one'), undefined);
  assert.equal(f.store.status('two:v1')?.id, idA());
  assert.deepEqual(await f.blobNames(), [idA().slice(7)], 'still named, so kept');
  await f.store.remove('one:latest'); // again: no error
  await f.store.remove('never-pulled');

  await f.store.remove(`two@${idA()}`);
  assert.equal(f.store.status(`two@${idA()}`), undefined);
  assert.equal(f.store.status('two:v1'), undefined, 'a digest ref removes that repo from the image');
  assert.deepEqual(await f.blobNames(), [], 'no name left: blob deleted');
  assert.throws(() => f.store.blobPath(idA()), NotFoundError);

  await f.store.pull('three');
  await f.store.pull(`three@${idB()}`);
  await f.store.remove(idB());
  assert.deepEqual(f.store.list(), []);
  assert.deepEqual(await f.blobNames(), []);
  await f.store.remove(idB());
  await f.store.remove(idB().slice(7));

  // The index on disk agrees after a restart.
  const again = await f.reopen();
  assert.deepEqual(again.list(), []);
});

test('fsInfo reports the mount point and non-zero usage of the image dir', async (t) => {
  const f = await makeStore(t);
  const raw = makeRaw(1024 * 1024, 'fsinfo');
  server.route('/s/fs.raw', serveBody(raw));
  const empty = await f.store.fsInfo();
  await f.store.pull(`${server.httpBase}/s/fs.raw`);
  const info = await f.store.fsInfo();
  const real = await realpath(f.imageDir);
  assert.ok(info.mountpoint === '/' || real === info.mountpoint || real.startsWith(`${info.mountpoint}/`), info.mountpoint);
  assert.ok(info.usedBytes >= BigInt(raw.length), `usedBytes ${info.usedBytes}`);
  assert.ok(info.usedBytes > empty.usedBytes);
  assert.ok(info.inodesUsed > empty.inodesUsed, `inodes ${empty.inodesUsed} -> ${info.inodesUsed}`);
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  assert.ok(info.timestampNs > nowNs - 60_000_000_000n && info.timestampNs <= nowNs + 1_000_000_000n);
});

test('a store without a translation dir pulls URLs only', async (t) => {
  const f = await makeStore(t);
  const plain = new ImageStore({ imageDir: join(f.root, 'plain-images'), logger: captureLogger([]) });
  await mkdir(join(f.root, 'plain-images'));
  await plain.init();
  t.after(() => plain.close());
  await assert.rejects(plain.pull('cirros'), /no image translation directory is configured/);
  assert.equal((await plain.pull(`${server.httpBase}/s/a.qcow2`)).id, idA());
});
