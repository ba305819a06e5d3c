/**
 * Pure: the small header vmlet keeps at the start of a persistent root device (Virtlet's
 * "persistent rootfs" convention: a block device with container_path "/"). The guest sees the
 * device from ROOT_PAYLOAD_OFFSET on; the header says which image was written there.
 *
 * Layout of the first HEADER_BYTES (little endian):
 * | offset | bytes | field                                                            |
 * |--------|-------|------------------------------------------------------------------|
 * | 0      | 16    | magic "VMLET-ROOT-DISK\n"                                        |
 * | 16     | 4     | version (ROOT_HEADER_VERSION)                                    |
 * | 20     | 4     | state: 1 = image complete, 0 = being written (a crash left it)   |
 * | 24     | 8     | payload offset in bytes (where the guest's disk starts)          |
 * | 32     | 8     | payload bytes written (the image's virtual size)                 |
 * | 40     | 2     | digest length n (at most MAX_DIGEST)                             |
 * | 42     | n     | image digest, ASCII ("sha256:<hex>")                             |
 * | 480    | 32    | SHA-256 of bytes 0..479                                          |
 * The version sits at a fixed place so that any later layout can be recognised and refused.
 */
import { createHash } from 'node:crypto';

export const HEADER_BYTES = 512;
/** 1 MiB: aligned for O_DIRECT (cache='none') and for any physical block size. */
export const ROOT_PAYLOAD_OFFSET = 1024 * 1024;
export const ROOT_HEADER_VERSION = 1;
/**
 * How much of the device's start decodeRootHeader is given: enough to see a partition table, an
 * LVM label or a filesystem superblock (ext4's is at 1 KiB) on a device that has no header.
 */
export const HEAD_BYTES = 64 * 1024;
const MAGIC = Buffer.from('VMLET-ROOT-DISK\n', 'ascii');
const MAX_DIGEST = 128;
const CHECKSUM_AT = 480;

export interface RootHeader {
  version: number;
  /** false while the image is being written: such a device is re-initialised. */
  complete: boolean;
  payloadOffset: number;
  payloadBytes: number;
  imageDigest: string;
}

export type DecodedHeader =
  /** All of the bytes read are zeroes: a fresh device. */
  | { kind: 'blank' }
  /** Something else is on the device (or a damaged header): overwriting it loses data. */
  | { kind: 'foreign'; why: string }
  /** Written by a newer vmlet: its layout is unknown here. */
  | { kind: 'newer'; version: number }
  | { kind: 'vmlet'; header: RootHeader };

export function encodeRootHeader(h: Omit<RootHeader, 'version'>): Buffer {
  const digest = Buffer.from(h.imageDigest, 'ascii');
  if (!/^[\x21-\x7e]+$/.test(h.imageDigest) || digest.length > MAX_DIGEST) throw new Error(`image digest ${JSON.stringify(h.imageDigest)} cannot go into a root disk header`);
  if (!Number.isSafeInteger(h.payloadOffset) || h.payloadOffset < HEADER_BYTES) throw new Error(`payload offset ${h.payloadOffset} is invalid`);
  if (!Number.isSafeInteger(h.payloadBytes) || h.payloadBytes < 0) throw new Error(`payload bytes ${h.payloadBytes} is invalid`);
  const b = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(ROOT_HEADER_VERSION, 16);
  b.writeUInt32LE(h.complete ? 1 : 0, 20);
  b.writeBigUInt64LE(BigInt(h.payloadOffset), 24);
  b.writeBigUInt64LE(BigInt(h.payloadBytes), 32);
  b.writeUInt16LE(digest.length, 40);
  digest.copy(b, 42);
  checksum(b).copy(b, CHECKSUM_AT);
  return b;
}

/** `b`: the first HEAD_BYTES of the device (at least HEADER_BYTES). */
export function decodeRootHeader(b: Buffer): DecodedHeader {
  if (b.length < HEADER_BYTES) throw new Error(`a root disk header needs ${HEADER_BYTES} bytes, got ${b.length}`);
  if (!b.subarray(0, MAGIC.length).equals(MAGIC)) {
    return b.every((x) => x === 0) ? { kind: 'blank' } : { kind: 'foreign', why: 'no vmlet root disk header' };
  }
  const version = b.readUInt32LE(16);
  if (version > ROOT_HEADER_VERSION) return { kind: 'newer', version };
  if (version !== ROOT_HEADER_VERSION) return { kind: 'foreign', why: `header version ${version} is invalid` };
  if (!checksum(b).equals(b.subarray(CHECKSUM_AT, CHECKSUM_AT + 32))) return { kind: 'foreign', why: 'header checksum mismatch' };
  const state = b.readUInt32LE(20);
  const payloadOffset = Number(b.readBigUInt64LE(24));
  const payloadBytes = Number(b.readBigUInt64LE(32));
  const n = b.readUInt16LE(40);
  if (state > 1 || n === 0 || n > MAX_DIGEST || !Number.isSafeInteger(payloadOffset) || !Number.isSafeInteger(payloadBytes) || payloadOffset < HEADER_BYTES) {
    return { kind: 'foreign', why: 'header fields out of range' };
  }
  return {
    kind: 'vmlet',
    header: { version, complete: state === 1, payloadOffset, payloadBytes, imageDigest: b.subarray(42, 42 + n).toString('ascii') },
  };
}

function checksum(b: Buffer): Buffer {
  return createHash('sha256').update(b.subarray(0, CHECKSUM_AT)).digest();
}

/** What to do with a device, from its header and the pod's image. */
export type RootDecision =
  | { action: 'boot' }
  | { action: 'initialise'; overwrites: false }
  | { action: 'initialise'; overwrites: true; why: string };

/** Pure: keep the device as it is only when it holds exactly this image, completely written at our offset. */
export function decideRoot(decoded: Exclude<DecodedHeader, { kind: 'newer' }>, imageDigest: string): RootDecision {
  switch (decoded.kind) {
    case 'blank':
      return { action: 'initialise', overwrites: false };
    case 'foreign':
      return { action: 'initialise', overwrites: true, why: decoded.why };
    case 'vmlet': {
      const h = decoded.header;
      if (!h.complete) return { action: 'initialise', overwrites: true, why: `an interrupted write of ${h.imageDigest}` };
      if (h.payloadOffset !== ROOT_PAYLOAD_OFFSET) return { action: 'initialise', overwrites: true, why: `payload at ${h.payloadOffset}, not ${ROOT_PAYLOAD_OFFSET}` };
      if (h.imageDigest !== imageDigest) return { action: 'initialise', overwrites: true, why: `it holds image ${h.imageDigest}` };
      return { action: 'boot' };
    }
  }
}
