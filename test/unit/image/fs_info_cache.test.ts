import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FS_INFO_MAX_AGE_MS, ImageStore } from '../../../src/image/store.js';

test('fsInfo reuses a young answer, measures again when it is old or a removal finished, and shares one measurement', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-fsinfo-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  let now = 1_000_000;
  const store = new ImageStore({ imageDir: dir, now: () => now });
  await store.init();
  t.after(() => store.close());

  const first = await store.fsInfo();
  await writeFile(join(dir, 'tmp', 'growing'), Buffer.alloc(1 << 20, 1));
  now += FS_INFO_MAX_AGE_MS - 1;
  const young = await store.fsInfo();
  assert.deepEqual(young, first, 'an answer younger than the bound is reused as it was measured');

  now += 1;
  const old = await store.fsInfo();
  assert.ok(old.usedBytes >= first.usedBytes + BigInt(1 << 20), `the file written since shows: ${first.usedBytes} -> ${old.usedBytes}`);
  assert.ok(old.inodesUsed > first.inodesUsed);

  await writeFile(join(dir, 'tmp', 'second'), Buffer.alloc(1 << 20, 2));
  await store.remove('example.test/absent:1'); // removing something absent is no error, and still ends the reuse
  const afterRemove = await store.fsInfo();
  assert.ok(afterRemove.usedBytes >= old.usedBytes + BigInt(1 << 20), `${old.usedBytes} -> ${afterRemove.usedBytes}`);

  now += FS_INFO_MAX_AGE_MS;
  const [a, b] = [store.fsInfo(), store.fsInfo()];
  assert.equal(a, b, 'concurrent calls share one measurement');
  await a;
});
