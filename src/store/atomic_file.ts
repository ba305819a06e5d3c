import { open, rename, unlink, mkdir } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fsyncDir } from './fsync.js';
import type { SyncBehind } from './sync_behind.js';

// Writers of their own files (the image store, the vmwrapper install) take it from here.
export { fsyncDir };

/** Prefix of temp files written by writeFileAtomic; a directory scan may delete leftovers with it. */
export const TEMP_PREFIX = '.tmp-';

export interface AtomicWriteOptions {
  mode?: number;
  /**
   * Without it the write is durable when the call resolves (fsync of the file before the rename,
   * of the directory after). With it the call resolves once the rename is done (atomic for readers
   * and for a crash of this process) and `syncBehind` makes it durable right after, off the
   * caller's path.
   */
  syncBehind?: SyncBehind;
}

/**
 * Writes `data` to `path` so that a reader (or a crash) only ever sees the old or the new whole
 * file: write a temp file beside it, fsync it, rename it over the target, fsync the directory.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  const { mode = 0o600, syncBehind } = options;
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `${TEMP_PREFIX}${basename(path)}.${randomBytes(6).toString('hex')}`);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    if (!syncBehind) await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await dirChanged(dir, syncBehind, path);
}

/**
 * Makes a rename or unlink in `dir` durable: now, or through `syncBehind` right after (with the
 * file written there, when there is one).
 */
export async function dirChanged(dir: string, syncBehind?: SyncBehind, file?: string): Promise<void> {
  if (syncBehind) syncBehind.add(dir, file);
  else await fsyncDir(dir);
}
