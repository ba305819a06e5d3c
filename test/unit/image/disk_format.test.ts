import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FailedPreconditionError } from '../../../src/errors.js';
import { archiveFormatOf, checkQcow2Header, judgeDiskImage, looksLikeText } from '../../../src/image/disk_format.js';

function qcow2Header(opts: { version?: number; backingOffset?: bigint; incompat?: bigint } = {}): Buffer {
  const b = Buffer.alloc(104);
  b.writeUInt32BE(0x514649fb, 0);
  b.writeUInt32BE(opts.version ?? 3, 4);
  b.writeBigUInt64BE(opts.backingOffset ?? 0n, 8);
  b.writeBigUInt64BE(opts.incompat ?? 0n, 72);
  return b;
}

const mbrLike = (): Buffer => {
  const b = Buffer.alloc(4096);
  b.write('\xeb\x63\x90', 0, 'latin1');
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
};

test('text detection: HTML and JSON are text, sectors with NULs are not', () => {
  assert.equal(looksLikeText(Buffer.from('<!DOCTYPE html><html><body>404 Not Found</body></html>\n')), true);
  assert.equal(looksLikeText(Buffer.from('{"error":"nope"}')), true);
  assert.equal(looksLikeText(Buffer.from('caf\u00e9 au lait', 'latin1')), false); // Latin-1 is not valid UTF-8
  assert.equal(looksLikeText(Buffer.from('caf\u00e9 au lait')), true);
  assert.equal(looksLikeText(Buffer.from([0xe2, 0x82])), true); // a cut-off character at the end
  assert.equal(looksLikeText(mbrLike()), false);
  assert.equal(looksLikeText(Buffer.alloc(512)), false);
  assert.equal(looksLikeText(Buffer.from([0xff, 0xfe, 0x41, 0x42])), false); // not UTF-8
});

test('archive detection', () => {
  assert.equal(archiveFormatOf(Buffer.from([0x1f, 0x8b, 8, 0])), 'gzip');
  assert.equal(archiveFormatOf(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0])), 'xz');
  assert.equal(archiveFormatOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])), 'zstd');
  const tar = Buffer.alloc(512);
  tar.write('ustar', 257);
  assert.equal(archiveFormatOf(tar), 'tar');
  assert.equal(archiveFormatOf(mbrLike()), undefined);
});

test('qcow2 header: backing file and external data file are refused before qemu-img runs', () => {
  assert.equal(checkQcow2Header(mbrLike()), false);
  assert.equal(checkQcow2Header(qcow2Header()), true);
  assert.equal(checkQcow2Header(qcow2Header({ version: 2 })), true);
  assert.throws(() => checkQcow2Header(qcow2Header({ backingOffset: 0x200n })), /backing file/);
  assert.throws(() => checkQcow2Header(qcow2Header({ incompat: 4n })), /external data file/);
  assert.equal(checkQcow2Header(qcow2Header({ incompat: 1n })), true); // dirty bit only
  assert.throws(() => checkQcow2Header(qcow2Header({ version: 4 })), /version 4/);
  assert.throws(() => checkQcow2Header(qcow2Header().subarray(0, 40)), /truncated/);
});

test('judgeDiskImage applies the format rules', () => {
  const q = qcow2Header();
  const qinfo = { format: 'qcow2', 'virtual-size': 1048576, 'format-specific': { type: 'qcow2', data: { corrupt: false } } };
  assert.deepEqual(judgeDiskImage(qinfo, q, 196608), { format: 'qcow2', virtualSize: 1048576n });
  assert.throws(() => judgeDiskImage({ ...qinfo, 'backing-filename': '/etc/shadow' }, q, 196608), FailedPreconditionError);
  assert.throws(
    () => judgeDiskImage({ ...qinfo, 'format-specific': { type: 'qcow2', data: { 'data-file': '/dev/sda' } } }, q, 196608),
    /external data file/,
  );
  assert.throws(() => judgeDiskImage({ ...qinfo, 'format-specific': { type: 'qcow2', data: { corrupt: true } } }, q, 196608), /corrupt/);
  assert.throws(() => judgeDiskImage(qinfo, mbrLike(), 196608), /header disagrees/);

  assert.deepEqual(judgeDiskImage({ format: 'raw', 'virtual-size': 4096 }, mbrLike(), 4096), { format: 'raw', virtualSize: 4096n });
  assert.throws(() => judgeDiskImage({ format: 'raw' }, Buffer.alloc(0), 0), /empty/);
  assert.throws(() => judgeDiskImage({ format: 'raw' }, mbrLike(), 4097), /512-byte sectors/);
  const html = Buffer.from('<html>'.padEnd(1024, ' '));
  assert.throws(() => judgeDiskImage({ format: 'raw' }, html, 1024), /text/);
  assert.throws(() => judgeDiskImage({ format: 'raw' }, Buffer.concat([Buffer.from([0x1f, 0x8b]), Buffer.alloc(510)]), 512), /gzip/);
  assert.throws(() => judgeDiskImage({ format: 'vmdk', 'virtual-size': 1 }, mbrLike(), 4096), /"vmdk" is not supported/);
  assert.throws(() => judgeDiskImage('nonsense', mbrLike(), 4096), /no format/);
});
