/**
 * The in-memory qcow2 overlay against QEMU's own tools: qemu-img check and info accept it, it reads
 * exactly like the overlay qemu-img creates, QEMU can write into it and it stays consistent, and the
 * bytes up to the backing name are pinned by a golden file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createOverlay } from '../../../src/container/disk.js';
import { qcow2Overlay } from '../../../src/container/qcow2_overlay.js';
import { InvalidArgumentError } from '../../../src/errors.js';
import { assertGolden } from '../../helpers/golden.js';

const run = promisify(execFile);
const MIB = 1024n * 1024n;

async function scratch(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-qcow2-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function info(path: string): Promise<Record<string, unknown>> {
  return JSON.parse((await run('qemu-img', ['info', '--output=json', path])).stdout) as Record<string, unknown>;
}

test('qemu-img accepts the overlay, and it reads exactly like the one qemu-img creates', async (t) => {
  const dir = await scratch(t);
  const base = join(dir, 'base.qcow2');
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', base, '48M']);
  await run('qemu-io', ['-c', 'write -P 0x5a 1M 2M', base]);
  const mine = join(dir, 'mine.qcow2');
  await createOverlay({ backingPath: base, backingFormat: 'qcow2', backingVirtualSize: 48n * MIB, overlayPath: mine });
  await run('qemu-img', ['check', mine]);
  const i = await info(mine);
  assert.equal(i['format'], 'qcow2');
  assert.equal(i['virtual-size'], 48 * 1024 * 1024);
  assert.equal(i['backing-filename'], base);
  assert.equal(i['backing-filename-format'], 'qcow2');
  const theirs = join(dir, 'theirs.qcow2');
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', theirs]);
  await run('qemu-img', ['compare', mine, theirs]);

  // QEMU writes into it (allocating L2 tables and clusters) and it stays consistent.
  await run('qemu-io', ['-c', 'write -P 0xa5 40M 4M', mine]);
  await run('qemu-img', ['check', mine]);
  await run('qemu-io', ['-c', 'read -P 0x5a 1M 2M', '-c', 'read -P 0xa5 40M 4M', mine]);
  await assert.rejects(createOverlay({ backingPath: base, backingFormat: 'qcow2', backingVirtualSize: 48n * MIB, overlayPath: mine }), /EEXIST/);
});

test('VirtletRootVolumeSize grows the disk (rounded up to whole sectors) and never shrinks it', async (t) => {
  const dir = await scratch(t);
  const base = join(dir, 'base.raw');
  await writeFile(base, Buffer.alloc(1024 * 1024));
  const grown = join(dir, 'grown.qcow2');
  await createOverlay({ backingPath: base, backingFormat: 'raw', backingVirtualSize: MIB, overlayPath: grown, sizeBytes: 5 * 1024 ** 4 + 1 });
  await run('qemu-img', ['check', grown]);
  assert.equal((await info(grown))['virtual-size'], 5 * 1024 ** 4 + 512);
  assert.equal((await info(grown))['backing-filename-format'], 'raw');
  await assert.rejects(createOverlay({ backingPath: base, backingFormat: 'raw', backingVirtualSize: MIB, overlayPath: join(dir, 'small.qcow2'), sizeBytes: 1024 }), InvalidArgumentError);
});

test('header bytes (golden) and refusals', () => {
  const image = qcow2Overlay({ backingPath: '/var/lib/vmlet/images/blobs/sha256/0123abcd', backingFormat: 'qcow2', virtualSize: 15n * MIB });
  assert.equal(image.length, 3 * 65536 + 8);
  assertGolden('container/qcow2-overlay-header.hex', image.subarray(0, 0x100).toString('hex').replace(/(.{64})/g, '$1\n'));
  assert.equal(image.subarray(0x20000, 0x20008).toString('hex'), '0001000100010001', 'four clusters in use');
  assert.throws(() => qcow2Overlay({ backingPath: '', backingFormat: 'qcow2', virtualSize: MIB }), InvalidArgumentError);
  assert.throws(() => qcow2Overlay({ backingPath: `/${'a'.repeat(1100)}`, backingFormat: 'qcow2', virtualSize: MIB }), InvalidArgumentError);
  assert.throws(() => qcow2Overlay({ backingPath: '/a\0b', backingFormat: 'qcow2', virtualSize: MIB }), InvalidArgumentError);
  assert.throws(() => qcow2Overlay({ backingPath: '/a', backingFormat: 'vmdk' as 'raw', virtualSize: MIB }), InvalidArgumentError);
  assert.throws(() => qcow2Overlay({ backingPath: '/a', backingFormat: 'raw', virtualSize: 1000n }), InvalidArgumentError);
});
