/**
 * BlobStore in a temp dir: open empties tmp/, adopt moves a download into place readable to QEMU,
 * sweep deletes what no image claims (blobs, temp files) but leaves foreign files, delete minds
 * no missing blob.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../../src/log.js';
import { BlobStore } from '../../../src/image/blob_store.js';

const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;

test('open, adopt, sweep, delete', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-blobs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const blobs = new BlobStore(dir, silentLogger);
  assert.deepEqual(await blobs.open(), []);
  const tmp = blobs.tempPath('pull');
  assert.ok(tmp.startsWith(`${blobs.tmpDir}/.tmp-pull-`), tmp);
  writeFileSync(tmp, 'disk A', { mode: 0o600 });
  assert.equal(await blobs.adopt(tmp, A), blobs.pathOf(A));
  assert.equal(readFileSync(blobs.pathOf(A), 'utf8'), 'disk A');
  assert.equal(statSync(blobs.pathOf(A)).mode & 0o777, 0o644, 'QEMU (another user) reads it');
  assert.equal(existsSync(tmp), false);
  writeFileSync(blobs.pathOf(B), 'disk B');
  writeFileSync(join(blobs.dir, '.tmp-leftover'), '');
  writeFileSync(join(blobs.dir, 'README'), 'not ours');
  writeFileSync(blobs.tempPath('pull'), 'an interrupted download');

  const names = await blobs.open();
  assert.deepEqual(readdirSync(blobs.tmpDir), [], 'open empties tmp/');
  await blobs.sweep(names, (id) => id === A);
  assert.deepEqual(readdirSync(blobs.dir).sort(), ['README', 'a'.repeat(64)]);
  await blobs.delete(A);
  await blobs.delete(A);
  assert.deepEqual(readdirSync(blobs.dir), ['README']);
  assert.ok((await blobs.freeBytes()) > 0);
});
