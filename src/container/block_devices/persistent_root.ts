/**
 * A persistent root disk (root_header.ts): the device's header is read, and the pod's image is
 * written onto the device after the header when the header does not name it. Side effects go
 * through RootDeviceIo (hostRootDeviceIo below; a fake in the unit tests).
 *
 * Crash safety: the header is first rewritten as "being written", then the image, then the
 * complete header, each durable before the next. A crash at any point leaves a header that makes
 * the next pod re-initialise the device, never one naming an image that is only half there.
 */
import { execFile } from 'node:child_process';
import { open, readFile, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { FailedPreconditionError, InvalidArgumentError, InternalError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { DiskFormat } from '../../image/disk_format.js';
import { HEAD_BYTES, ROOT_HEADER_VERSION, ROOT_PAYLOAD_OFFSET, decideRoot, decodeRootHeader, encodeRootHeader, type RootDecision } from './root_header.js';

/** The image a pod boots, as the image store has it. */
export interface RootImage {
  /** `sha256:<hex>` (the image id): what the header records. */
  digest: string;
  /** The blob file and its format. */
  path: string;
  format: DiskFormat;
  /** Bytes the guest sees of the image: what is written onto the device. */
  virtualSize: number;
}

export interface RootDeviceIo {
  /** The device's size in bytes. */
  sizeBytes(device: string): Promise<number>;
  /** The first `bytes` of the device. */
  readHead(device: string, bytes: number): Promise<Buffer>;
  /** Writes `header` at offset 0, durably. */
  writeHeader(device: string, header: Buffer): Promise<void>;
  /** Writes the image's guest-visible bytes (raw) at `offset`, durably. */
  writeImage(image: RootImage, device: string, offset: number): Promise<void>;
}

/** A root device checked against the pod's image; nothing written yet. */
export interface CheckedRoot {
  device: string;
  /** Where the guest's disk starts on the device, and its size (the rest of the device). */
  payloadOffset: number;
  payloadBytes: number;
  decision: RootDecision;
}

/**
 * Reads the header and decides; refuses (changing nothing) a header of a newer vmlet
 * (FAILED_PRECONDITION) and an image that does not fit after the header (INVALID_ARGUMENT).
 */
export async function checkPersistentRoot(io: RootDeviceIo, device: string, image: RootImage): Promise<CheckedRoot> {
  const size = await io.sizeBytes(device);
  const room = size - ROOT_PAYLOAD_OFFSET;
  const decoded = decodeRootHeader(await io.readHead(device, Math.min(HEAD_BYTES, size)));
  if (decoded.kind === 'newer') {
    throw new FailedPreconditionError(`persistent root disk ${device} has a header of version ${decoded.version}, newer than this vmlet's ${ROOT_HEADER_VERSION}; upgrade vmlet or give another device`);
  }
  const decision = decideRoot(decoded, image.digest);
  if (decision.action === 'initialise' && image.virtualSize > room) {
    throw new InvalidArgumentError(`image ${image.digest} (${image.virtualSize} bytes) does not fit on persistent root disk ${device} (${size} bytes, ${Math.max(0, room)} after vmlet's ${ROOT_PAYLOAD_OFFSET}-byte header)`);
  }
  return { device, payloadOffset: ROOT_PAYLOAD_OFFSET, payloadBytes: room, decision };
}

/** Writes the image when the check said so; a device that already holds it is left as it is. */
export async function initialisePersistentRoot(io: RootDeviceIo, logger: Logger, checked: CheckedRoot, image: RootImage, context: object): Promise<void> {
  const { decision, device, payloadOffset } = checked;
  if (decision.action === 'boot') {
    logger.info({ ...context, device, image: image.digest }, 'persistent root disk holds the image: booting it as it is');
    return;
  }
  if (decision.overwrites) {
    logger.warn({ ...context, device, image: image.digest, previous: decision.why }, `overwriting the contents of persistent root disk ${device} with image ${image.digest} (${decision.why})`);
  }
  const header = (complete: boolean) => encodeRootHeader({ complete, payloadOffset, payloadBytes: image.virtualSize, imageDigest: image.digest });
  await io.writeHeader(device, header(false));
  await io.writeImage(image, device, payloadOffset);
  await io.writeHeader(device, header(true));
}

const run = promisify(execFile);

/** Linux's dev_t split (glibc's gnu_dev_major/minor). */
function majorMinor(rdev: bigint): string {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** qemu-img's option syntax doubles a comma inside a value. */
const optionValue = (v: string) => v.replaceAll(',', ',,');

export const hostRootDeviceIo: RootDeviceIo = {
  async sizeBytes(device) {
    const st = await stat(device, { bigint: true });
    if (!st.isBlockDevice()) throw new InvalidArgumentError(`${device} is not a block device`);
    // A block device's st_size is 0; sysfs counts 512-byte sectors whatever the logical block size.
    const sectors = (await readFile(`/sys/dev/block/${majorMinor(st.rdev)}/size`, 'utf8')).trim();
    if (!/^\d+$/.test(sectors)) throw new InternalError(`unreadable size of ${device}: ${sectors}`);
    return Number(sectors) * 512;
  },
  async readHead(device, bytes) {
    const fh = await open(device, 'r');
    try {
      const buf = Buffer.alloc(bytes);
      const { bytesRead } = await fh.read(buf, 0, bytes, 0);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  },
  async writeHeader(device, header) {
    const fh = await open(device, 'r+');
    try {
      await fh.write(header, 0, header.length, 0);
      await fh.datasync();
    } finally {
      await fh.close();
    }
  },
  async writeImage(image, device, offset) {
    // -n: the device exists (nothing is created); qemu-img still writes the image's zero areas, so
    // old contents do not show through. -t none: O_DIRECT, and qemu-img flushes before it exits.
    const target = `driver=raw,offset=${offset},size=${image.virtualSize},file.driver=host_device,file.filename=${optionValue(device)}`;
    try {
      await run('qemu-img', ['convert', '-n', '-f', image.format, '-t', 'none', '--target-image-opts', image.path, target], { maxBuffer: 1024 * 1024 });
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr?.trim();
      throw new InternalError(`writing image ${image.digest} onto ${device} failed: ${stderr || (err as Error).message}`);
    }
  },
};
