import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import type { Logger } from '../../../../src/log.js';
import { Code, VmletError } from '../../../../src/errors.js';
import { checkPersistentRoot, initialisePersistentRoot, type RootDeviceIo, type RootImage } from '../../../../src/container/block_devices/persistent_root.js';
import { HEAD_BYTES, ROOT_PAYLOAD_OFFSET, decodeRootHeader, encodeRootHeader } from '../../../../src/container/block_devices/root_header.js';

const MIB = 1024 * 1024;
const IMAGE: RootImage = { digest: 'sha256:' + 'ab'.repeat(32), path: '/images/blob', format: 'qcow2', virtualSize: 15 * MIB };

/** A device as a buffer; every call logged. */
function fakeDevice(size: number, init?: (b: Buffer) => void): { io: RootDeviceIo; bytes: Buffer; calls: string[] } {
  const bytes = Buffer.alloc(size);
  init?.(bytes);
  const calls: string[] = [];
  const io: RootDeviceIo = {
    sizeBytes: async () => size,
    readHead: async (_d, n) => Buffer.from(bytes.subarray(0, n)),
    writeHeader: async (d, header) => {
      const decoded = decodeRootHeader(Buffer.concat([header, Buffer.alloc(HEAD_BYTES)]));
      calls.push(`header ${d} ${decoded.kind === 'vmlet' ? `complete=${decoded.header.complete}` : decoded.kind}`);
      header.copy(bytes, 0);
    },
    writeImage: async (image, d, offset) => {
      calls.push(`image ${image.path} (${image.format}) -> ${d}@${offset}`);
      bytes.fill(0x5a, offset, offset + image.virtualSize);
    },
  };
  return { io, bytes, calls };
}

function capture(): { logger: Logger; lines: () => { level: number; msg: string; device?: string }[] } {
  const out: string[] = [];
  const logger: Logger = pino({ level: 'info' }, new Writable({ write: (c, _e, cb) => (out.push(String(c)), cb()) }));
  return { logger, lines: () => out.map((l) => JSON.parse(l)) };
}

test('a blank device: header "being written", the image after the header, then the complete header; no warning', async () => {
  const dev = fakeDevice(64 * MIB);
  const checked = await checkPersistentRoot(dev.io, '/dev/loop7', IMAGE);
  assert.deepEqual(checked, { device: '/dev/loop7', payloadOffset: ROOT_PAYLOAD_OFFSET, payloadBytes: 63 * MIB, decision: { action: 'initialise', overwrites: false } });
  const log = capture();
  await initialisePersistentRoot(dev.io, log.logger, checked, IMAGE, { containerId: 'c1' });
  assert.deepEqual(dev.calls, ['header /dev/loop7 complete=false', 'image /images/blob (qcow2) -> /dev/loop7@1048576', 'header /dev/loop7 complete=true']);
  assert.equal(log.lines().filter((l) => l.level >= 40).length, 0);
  const again = await checkPersistentRoot(dev.io, '/dev/loop7', IMAGE);
  assert.deepEqual(again.decision, { action: 'boot' });
});

test('another image on the device: re-initialised with a warning naming the device', async () => {
  const other = 'sha256:' + 'cd'.repeat(32);
  const dev = fakeDevice(64 * MIB, (b) => encodeRootHeader({ complete: true, payloadOffset: ROOT_PAYLOAD_OFFSET, payloadBytes: MIB, imageDigest: other }).copy(b));
  const checked = await checkPersistentRoot(dev.io, '/dev/loop7', IMAGE);
  const log = capture();
  await initialisePersistentRoot(dev.io, log.logger, checked, IMAGE, {});
  const warnings = log.lines().filter((l) => l.level === 40);
  assert.equal(warnings.length, 1);
  assert.equal(warnings[0]!.device, '/dev/loop7');
  assert.match(warnings[0]!.msg, new RegExp(`overwriting the contents of persistent root disk /dev/loop7 with image ${IMAGE.digest} \\(it holds image ${other}\\)`));
  assert.equal(dev.calls.length, 3);
});

test('a device holding the image boots as it is: nothing written', async () => {
  const dev = fakeDevice(64 * MIB, (b) => encodeRootHeader({ complete: true, payloadOffset: ROOT_PAYLOAD_OFFSET, payloadBytes: IMAGE.virtualSize, imageDigest: IMAGE.digest }).copy(b));
  const checked = await checkPersistentRoot(dev.io, '/dev/loop7', IMAGE);
  await initialisePersistentRoot(dev.io, capture().logger, checked, IMAGE, {});
  assert.deepEqual(dev.calls, []);
});

test('a crash while the image was written: the next check re-initialises', async () => {
  const dev = fakeDevice(64 * MIB);
  const failing: RootDeviceIo = { ...dev.io, writeImage: async () => { throw new Error('killed'); } };
  const checked = await checkPersistentRoot(failing, '/dev/loop7', IMAGE);
  await assert.rejects(initialisePersistentRoot(failing, capture().logger, checked, IMAGE, {}), /killed/);
  const next = await checkPersistentRoot(dev.io, '/dev/loop7', IMAGE);
  assert.deepEqual(next.decision, { action: 'initialise', overwrites: true, why: `an interrupted write of ${IMAGE.digest}` });
});

test('a newer header is FAILED_PRECONDITION; an image larger than the device after the header is INVALID_ARGUMENT; nothing written', async () => {
  const newer = fakeDevice(64 * MIB, (b) => {
    encodeRootHeader({ complete: true, payloadOffset: ROOT_PAYLOAD_OFFSET, payloadBytes: MIB, imageDigest: IMAGE.digest }).copy(b);
    b.writeUInt32LE(7, 16);
  });
  await assert.rejects(checkPersistentRoot(newer.io, '/dev/loop7', IMAGE), (e: unknown) => e instanceof VmletError && e.code === Code.FAILED_PRECONDITION && /version 7, newer/.test(e.message));
  const small = fakeDevice(16 * MIB); // 15 MiB of room after the header, and the image is 15 MiB
  assert.equal((await checkPersistentRoot(small.io, '/dev/loop7', IMAGE)).decision.action, 'initialise');
  const tooSmall = fakeDevice(16 * MIB - 512);
  await assert.rejects(checkPersistentRoot(tooSmall.io, '/dev/loop7', IMAGE), (e: unknown) => e instanceof VmletError && e.code === Code.INVALID_ARGUMENT && /does not fit on persistent root disk \/dev\/loop7/.test(e.message));
  assert.deepEqual([...newer.calls, ...tooSmall.calls], []);
});
