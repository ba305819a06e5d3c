import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertGolden } from '../../../helpers/golden.js';
import { HEADER_BYTES, HEAD_BYTES, ROOT_PAYLOAD_OFFSET, decideRoot, decodeRootHeader, encodeRootHeader } from '../../../../src/container/block_devices/root_header.js';

const DIGEST = 'sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945';
const OTHER = 'sha256:0000000000000000000000000000000000000000000000000000000000000001';

function head(header: Buffer): Buffer {
  const b = Buffer.alloc(HEAD_BYTES);
  header.copy(b);
  return b;
}

test('root header: golden bytes of a complete and an in-progress header', () => {
  const complete = encodeRootHeader({ complete: true, payloadOffset: ROOT_PAYLOAD_OFFSET, payloadBytes: 15728640, imageDigest: DIGEST });
  const writing = encodeRootHeader({ complete: false, payloadOffset: ROOT_PAYLOAD_OFFSET, payloadBytes: 15728640, imageDigest: DIGEST });
  assert.equal(complete.length, HEADER_BYTES);
  assertGolden('container/root-header-complete.bin', complete);
  assertGolden('container/root-header-writing.bin', writing);
  assert.equal(complete.subarray(0, 16).toString('ascii'), 'VMLET-ROOT-DISK\n');
});

test('root header: decode(encode(x)) is x; the rest of the head does not matter', () => {
  const h = { complete: true, payloadOffset: ROOT_PAYLOAD_OFFSET, payloadBytes: 123 * 512, imageDigest: DIGEST };
  const b = head(encodeRootHeader(h));
  b.fill(0xaa, HEADER_BYTES); // payload bytes after the header are not the header's
  assert.deepEqual(decodeRootHeader(b), { kind: 'vmlet', header: { version: 1, ...h } });
});

test('root header: blank, foreign, damaged and newer devices', () => {
  assert.deepEqual(decodeRootHeader(Buffer.alloc(HEAD_BYTES)), { kind: 'blank' });
  // An ext4 filesystem: zeroes in its first KiB, the superblock at 1024.
  const ext4 = Buffer.alloc(HEAD_BYTES);
  ext4.writeUInt16LE(0xef53, 1024 + 0x38);
  assert.equal(decodeRootHeader(ext4).kind, 'foreign');
  const damaged = head(encodeRootHeader({ complete: true, payloadOffset: ROOT_PAYLOAD_OFFSET, payloadBytes: 512, imageDigest: DIGEST }));
  damaged[50] ^= 1;
  assert.deepEqual(decodeRootHeader(damaged), { kind: 'foreign', why: 'header checksum mismatch' });
  const newer = head(encodeRootHeader({ complete: true, payloadOffset: ROOT_PAYLOAD_OFFSET, payloadBytes: 512, imageDigest: DIGEST }));
  newer.writeUInt32LE(2, 16); // a later layout: the checksum may be elsewhere, the version is not
  assert.deepEqual(decodeRootHeader(newer), { kind: 'newer', version: 2 });
  assert.throws(() => decodeRootHeader(Buffer.alloc(100)), /needs 512 bytes/);
});

test('root header: refuses what it cannot encode', () => {
  assert.throws(() => encodeRootHeader({ complete: true, payloadOffset: ROOT_PAYLOAD_OFFSET, payloadBytes: 1, imageDigest: 'x'.repeat(129) }), /cannot go into/);
  assert.throws(() => encodeRootHeader({ complete: true, payloadOffset: ROOT_PAYLOAD_OFFSET, payloadBytes: 1, imageDigest: 'a b' }), /cannot go into/);
  assert.throws(() => encodeRootHeader({ complete: true, payloadOffset: 0, payloadBytes: 1, imageDigest: DIGEST }), /payload offset/);
});

test('root decision: boot only a complete header of this image at our offset', () => {
  const vmlet = (complete: boolean, imageDigest: string, payloadOffset = ROOT_PAYLOAD_OFFSET) =>
    ({ kind: 'vmlet', header: { version: 1, complete, payloadOffset, payloadBytes: 512, imageDigest } }) as const;
  assert.deepEqual(decideRoot(vmlet(true, DIGEST), DIGEST), { action: 'boot' });
  assert.deepEqual(decideRoot({ kind: 'blank' }, DIGEST), { action: 'initialise', overwrites: false });
  assert.deepEqual(decideRoot(vmlet(true, OTHER), DIGEST), { action: 'initialise', overwrites: true, why: `it holds image ${OTHER}` });
  assert.deepEqual(decideRoot(vmlet(false, DIGEST), DIGEST), { action: 'initialise', overwrites: true, why: `an interrupted write of ${DIGEST}` });
  assert.equal(decideRoot(vmlet(true, DIGEST, 4096), DIGEST).action, 'initialise');
  assert.deepEqual(decideRoot({ kind: 'foreign', why: 'no vmlet root disk header' }, DIGEST), { action: 'initialise', overwrites: true, why: 'no vmlet root disk header' });
});
