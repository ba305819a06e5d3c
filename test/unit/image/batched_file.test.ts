import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { BatchedFileWriter } from '../../../src/image/batched_file.js';

async function withTempFile(fn: (fh: FileHandle, path: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-batched-'));
  const path = join(dir, 'f');
  const fh = await open(path, 'wx', 0o600);
  try {
    await fn(fh, path);
  } finally {
    await fh.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
}

/** Appends like the download loop does: waits whenever append asks it to. */
async function appendAll(w: BatchedFileWriter, chunks: Buffer[]): Promise<void> {
  for (const c of chunks) {
    const wait = w.append(c);
    if (wait) await wait;
  }
}

test('the file holds every chunk in order, across batch, buffer-count and sync boundaries', async () => {
  await withTempFile(async (fh, path) => {
    const chunks = Array.from({ length: 300 }, (_, i) => randomBytes(1 + ((i * 7919) % 5000)));
    chunks.splice(5, 0, Buffer.alloc(0));
    // Small batches (by bytes and by buffer count) and frequent datasyncs exercise every path.
    const w = new BatchedFileWriter(fh, { batchBytes: 20_000, batchBuffers: 7, syncEveryBytes: 50_000 });
    await appendAll(w, chunks);
    const expected = Buffer.concat(chunks);
    assert.equal(w.bytes, expected.length);
    await w.finish();
    assert.deepEqual(await readFile(path), expected);
  });
});

test('a short writev resumes where it stopped', async () => {
  await withTempFile(async (real, path) => {
    let calls = 0;
    // At most 3 bytes per call, starting inside a buffer and crossing into the next ones.
    const shortWrites = {
      writev: (buffers: Buffer[], position: number) => {
        calls++;
        return real.writev([Buffer.concat(buffers).subarray(0, 3)], position);
      },
      datasync: () => real.datasync(),
      sync: () => real.sync(),
    } as unknown as FileHandle;
    const w = new BatchedFileWriter(shortWrites, { batchBytes: 4 });
    await appendAll(w, [Buffer.from('ab'), Buffer.from('cdefg'), Buffer.from('h'), Buffer.from('ijklmnop')]);
    await w.finish();
    assert.equal(await readFile(path, 'utf8'), 'abcdefghijklmnop');
    assert.ok(calls >= 6, `expected several short writes, got ${calls}`);
  });
});

test('a failed write fails the next append or finish, and settled() still resolves', async () => {
  const failing = {
    writev: () => Promise.reject(Object.assign(new Error('no space'), { code: 'ENOSPC' })),
    datasync: () => Promise.resolve(),
    sync: () => Promise.resolve(),
  } as unknown as FileHandle;
  const w = new BatchedFileWriter(failing, { batchBytes: 2 });
  assert.equal(w.append(Buffer.from('ab')), undefined); // the write starts in the background
  await w.settled();
  await assert.rejects(async () => w.append(Buffer.from('c')), /no space/);
  await assert.rejects(w.finish(), /no space/);
  await w.settled();
});

test('a failed background datasync fails the next append or finish', async () => {
  await withTempFile(async (real) => {
    const syncFails = {
      writev: (b: Buffer[], p: number) => real.writev(b, p),
      datasync: () => Promise.reject(new Error('EIO')),
      sync: () => real.sync(),
    } as unknown as FileHandle;
    const w = new BatchedFileWriter(syncFails, { batchBytes: 4, syncEveryBytes: 8 });
    await assert.rejects(async () => {
      await appendAll(w, [Buffer.alloc(8), Buffer.alloc(8), Buffer.alloc(8)]);
      await w.finish();
    }, /EIO/);
    await w.settled();
  });
});
