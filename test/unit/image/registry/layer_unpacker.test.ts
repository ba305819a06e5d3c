import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, stat, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { LayerUnpacker, UnpackFailure, ZERO_RUN_BYTES, type TarHeader } from '../../../../src/image/registry/layer_unpacker.js';
import { tarOf } from '../../../helpers/registry.js';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A disk with zero runs that are aligned, unaligned, shorter than a run, and trailing. */
function patchyDisk(): Buffer {
  const disk = Buffer.alloc(40 * ZERO_RUN_BYTES + 777);
  randomBytes(3 * ZERO_RUN_BYTES + 5).copy(disk, 0);
  randomBytes(100).copy(disk, 6 * ZERO_RUN_BYTES + 10); // inside a run: that run is data
  randomBytes(ZERO_RUN_BYTES / 2).copy(disk, 9 * ZERO_RUN_BYTES + ZERO_RUN_BYTES / 4);
  randomBytes(11 * ZERO_RUN_BYTES).copy(disk, 20 * ZERO_RUN_BYTES - 3);
  return disk; // the last 8+ runs and the odd tail are zeros
}

interface Unpacked {
  blobSha256: string;
  headers: TarHeader[];
  files: { sha256: string; bytes: number; content: Buffer; allocated: number }[];
}

/** Feeds `blob` in odd-sized chunks; extracts every regular file whose name starts with `disk/`. */
async function unpack(blob: Buffer, gzip: boolean, dir: string, maxUnpackedBytes = 1 << 30): Promise<Unpacked> {
  const headers: TarHeader[] = [];
  const files: Unpacked['files'] = [];
  let current: { fh: FileHandle; path: string } | undefined;
  const u = new LayerUnpacker({
    gzip,
    blobBytes: blob.length,
    maxUnpackedBytes,
    onEntry: async (h) => {
      headers.push(h);
      if (h.type !== 'file' || !h.name.startsWith('disk/')) return undefined;
      const path = join(dir, `f${headers.length}`);
      current = { fh: await open(path, 'wx'), path };
      return current.fh.fd;
    },
    onFile: async ({ sha256: hex, bytes }) => {
      const c = current!;
      current = undefined;
      await c.fh.truncate(bytes);
      await c.fh.close();
      files.push({ sha256: hex, bytes, content: await readFile(c.path), allocated: (await stat(c.path)).blocks * 512 });
    },
  });
  try {
    for (let off = 0; off < blob.length; off += 65_521) {
      const wait = u.write(blob.subarray(off, off + 65_521));
      if (wait) await wait;
    }
    return { blobSha256: await u.end(), headers, files };
  } finally {
    await u.close();
    await current?.fh.close();
  }
}

test('layer unpacker: gzip and plain tar; file bytes, sha256 and blob sha256 match; zero runs become holes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-unpack-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const disk = patchyDisk();
  const tar = await tarOf([
    { name: 'etc/hostname', content: Buffer.from('x\n') },
    { name: 'disk/', type: 'directory' },
    { name: 'disk/disk.img', content: disk },
  ]);
  for (const [gzip, blob] of [
    [true, gzipSync(tar)],
    [false, tar],
  ] as const) {
    const got = await unpack(blob, gzip, dir);
    assert.equal(got.blobSha256, sha256(blob));
    assert.deepEqual(
      got.headers.map((h) => [h.name, h.type, h.size]),
      [
        ['etc/hostname', 'file', 2],
        ['disk/', 'directory', 0],
        ['disk/disk.img', 'file', disk.length],
      ],
    );
    assert.equal(got.files.length, 1);
    const f = got.files[0]!;
    assert.equal(f.bytes, disk.length);
    assert.equal(f.sha256, sha256(disk));
    assert.ok(f.content.equals(disk), 'the file holds the disk byte for byte');
    assert.ok(f.allocated < disk.length - 8 * ZERO_RUN_BYTES, `zero runs are holes (${f.allocated} bytes allocated of ${disk.length})`);
    await rm(join(dir, 'f3'));
  }
});

test('layer unpacker: a gzip bomb past the limit, corrupt gzip and a non-tar fail with their reason', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-unpack-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const tar = await tarOf([{ name: 'disk/disk.img', content: Buffer.alloc(8 * 1024 * 1024) }]);
  await assert.rejects(unpack(gzipSync(tar), true, dir, 1024 * 1024), (err: unknown) => {
    assert.ok(err instanceof UnpackFailure && err.limit, String(err));
    assert.match(err.message, /unpacks to more than 1048576 bytes/);
    return true;
  });
  const corrupt = gzipSync(tar);
  corrupt.fill(0x55, 20, 60);
  await assert.rejects(unpack(corrupt, true, dir), (err: unknown) => {
    assert.ok(err instanceof UnpackFailure && err.code?.startsWith('Z_'), String(err));
    return true;
  });
  await assert.rejects(unpack(randomBytes(4096), false, dir), (err: unknown) => {
    assert.ok(err instanceof UnpackFailure && !err.limit && err.code === undefined, String(err));
    return true;
  });
});

test('layer unpacker: an entry refused by the caller stops the layer with the caller error', async () => {
  const tar = await tarOf([{ name: 'disk/a', content: Buffer.from('a') }]);
  const refusal = new Error('refused by the tree');
  const u = new LayerUnpacker({
    gzip: false,
    blobBytes: tar.length,
    maxUnpackedBytes: 1 << 20,
    onEntry: () => Promise.reject(refusal),
    onFile: () => Promise.resolve(),
  });
  try {
    await u.write(tar);
    await assert.rejects(u.end(), (err: unknown) => err === refusal);
  } finally {
    await u.close();
  }
});
