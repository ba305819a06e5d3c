import { execFile } from 'node:child_process';
import { open } from 'node:fs/promises';
import { DeadlineExceededError, FailedPreconditionError, InternalError, errorText } from '../errors.js';

/**
 * Decides whether a downloaded file is a disk image vmlet will hand to QEMU, and which format.
 *
 * Rules:
 * - qcow2 (by qemu-img): accepted unless it names a backing file or an external data file (either
 *   would make QEMU open a host path chosen by whoever served the image) or is marked corrupt.
 *   The header is checked by us before qemu-img runs, so qemu-img never opens such a path either.
 * - raw (qemu-img calls anything it does not recognise "raw"): accepted only when the size is a
 *   non-zero multiple of 512 (a disk is whole sectors), the file is not a known compressed or
 *   archive format (gzip, xz, bzip2, zstd, zip, 7z, tar: a compressed image must be unpacked
 *   first), and its first 64 KiB do not look like text. "Looks like text" means: no NUL byte and
 *   valid UTF-8 — an HTML error page or a JSON error is that; a disk's boot sector, partition table
 *   or filesystem superblock region always holds NUL bytes.
 * - anything else qemu-img recognises (vmdk, vdi, luks, …): refused.
 */

export type DiskFormat = 'qcow2' | 'raw';

export interface DiskImageFacts {
  format: DiskFormat;
  virtualSize: bigint;
}

/** How much of the file's start the content rules look at. */
export const HEAD_BYTES = 64 * 1024;

const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
const QCOW2_INCOMPAT_EXTERNAL_DATA = 1n << 2n;

const ARCHIVE_MAGICS: { name: string; offset: number; bytes: number[] }[] = [
  { name: 'gzip', offset: 0, bytes: [0x1f, 0x8b] },
  { name: 'xz', offset: 0, bytes: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] },
  { name: 'bzip2', offset: 0, bytes: [0x42, 0x5a, 0x68] },
  { name: 'zstd', offset: 0, bytes: [0x28, 0xb5, 0x2f, 0xfd] },
  { name: 'zip', offset: 0, bytes: [0x50, 0x4b, 0x03, 0x04] },
  { name: '7z', offset: 0, bytes: [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c] },
  { name: 'tar', offset: 257, bytes: [0x75, 0x73, 0x74, 0x61, 0x72] }, // "ustar"
];

function refuse(what: string): never {
  throw new FailedPreconditionError(`image content refused: ${what}`);
}

/** Name of the compressed/archive format `head` starts with, if any. */
export function archiveFormatOf(head: Buffer): string | undefined {
  for (const m of ARCHIVE_MAGICS) {
    if (head.length < m.offset + m.bytes.length) continue;
    if (m.bytes.every((b, i) => head[m.offset + i] === b)) return m.name;
  }
  return undefined;
}

/** True when `head` has no NUL byte and decodes as UTF-8 (a cut-off last character is allowed). */
export function looksLikeText(head: Buffer): boolean {
  if (head.length === 0 || head.includes(0)) return false;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(head, { stream: true });
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks a qcow2 header for features that make QEMU open other files. Returns false when `head`
 * is not qcow2 at all. Offsets are from QEMU's docs/interop/qcow2.txt.
 */
export function checkQcow2Header(head: Buffer): boolean {
  if (head.length < 4 || head.readUInt32BE(0) !== QCOW2_MAGIC) return false;
  if (head.length < 72) refuse('truncated qcow2 header');
  const version = head.readUInt32BE(4);
  if (version !== 2 && version !== 3) refuse(`qcow2 version ${version} is not supported`);
  if (head.readBigUInt64BE(8) !== 0n) refuse('qcow2 image has a backing file');
  if (version === 3) {
    if (head.length < 80) refuse('truncated qcow2 v3 header');
    if ((head.readBigUInt64BE(72) & QCOW2_INCOMPAT_EXTERNAL_DATA) !== 0n) refuse('qcow2 image uses an external data file');
  }
  return true;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Applies the rules above to `qemu-img info --output=json` output, the file's first bytes and
 * its size. Pure; throws FailedPreconditionError when the image is refused.
 */
export function judgeDiskImage(info: unknown, head: Buffer, fileSize: number): DiskImageFacts {
  if (!isObject(info) || typeof info.format !== 'string') refuse('qemu-img reported no format');
  const format = info.format;
  if (format === 'qcow2') {
    if (!checkQcow2Header(head)) refuse('qemu-img says qcow2 but the header disagrees');
    if (info['backing-filename'] !== undefined || info['full-backing-filename'] !== undefined) {
      refuse('qcow2 image has a backing file');
    }
    const specific = info['format-specific'];
    const data = isObject(specific) && isObject(specific.data) ? specific.data : {};
    if (data['data-file'] !== undefined) refuse('qcow2 image uses an external data file');
    if (data.corrupt === true) refuse('qcow2 image is marked corrupt');
    const vsize = info['virtual-size'];
    if (typeof vsize !== 'number' || !Number.isSafeInteger(vsize) || vsize <= 0) refuse('qcow2 image has no virtual size');
    return { format: 'qcow2', virtualSize: BigInt(vsize) };
  }
  if (format === 'raw') {
    if (fileSize === 0) refuse('the file is empty');
    if (fileSize % 512 !== 0) refuse(`not a disk image (${fileSize} bytes is not a whole number of 512-byte sectors)`);
    const archive = archiveFormatOf(head);
    if (archive) refuse(`the file is ${archive} data; unpack it and serve the disk image itself`);
    if (looksLikeText(head)) refuse('not a disk image (the content is text, perhaps an error page)');
    return { format: 'raw', virtualSize: BigInt(fileSize) };
  }
  refuse(`format ${JSON.stringify(format)} is not supported (only qcow2 and raw)`);
}

export interface ProbeOptions {
  qemuImg: string;
  timeoutMs: number;
}

async function readHead(path: string): Promise<{ head: Buffer; size: number }> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const buf = Buffer.alloc(Math.min(HEAD_BYTES, size));
    let off = 0;
    while (off < buf.length) {
      const { bytesRead } = await fh.read(buf, off, buf.length - off, off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    return { head: buf.subarray(0, off), size };
  } finally {
    await fh.close();
  }
}

function runQemuImgInfo(path: string, opts: ProbeOptions): Promise<unknown> {
  return new Promise((resolve, reject) => {
    execFile(
      opts.qemuImg,
      ['info', '--output=json', path],
      { timeout: opts.timeoutMs, killSignal: 'SIGKILL', maxBuffer: 4 * 1024 * 1024, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' } },
      (err, stdout, stderr) => {
        if (err) {
          const e = err as NodeJS.ErrnoException & { killed?: boolean };
          if (e.code === 'ENOENT') reject(new InternalError(`${opts.qemuImg} not found; install qemu-utils`));
          else if (e.killed) reject(new DeadlineExceededError(`qemu-img info took longer than ${opts.timeoutMs} ms`));
          else reject(new FailedPreconditionError(`image content refused: qemu-img cannot read it: ${String(stderr).trim().split('\n')[0] || errorText(err)}`));
          return;
        }
        try {
          resolve(JSON.parse(stdout));
        } catch (parseErr) {
          reject(new InternalError(`qemu-img info printed unparsable JSON: ${errorText(parseErr)}`));
        }
      },
    );
  });
}

/** Inspects the file at `path` (an absolute path vmlet chose) and returns its format and virtual size. */
export async function probeDiskImage(path: string, opts: ProbeOptions): Promise<DiskImageFacts> {
  const { head, size } = await readHead(path);
  // Refuse backing/data-file references before qemu-img gets a chance to open them.
  checkQcow2Header(head);
  const info = await runQemuImgInfo(path, opts);
  return judgeDiskImage(info, head, size);
}
