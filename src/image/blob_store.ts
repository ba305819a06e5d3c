/**
 * Image disk files named only by the sha256 of their content: `<imageDir>/blobs/sha256/<hex>`,
 * and `<imageDir>/tmp/` for downloads in progress (emptied at open). It knows no image names:
 * the index (image_index.ts) says which blobs are images, and what it does not claim is swept.
 */
import { chmod, mkdir, readdir, rename, rm, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fsyncDir, TEMP_PREFIX } from '../store/atomic_file.js';
import { errorText } from '../errors.js';
import type { Logger } from '../log.js';
import { hexOfId } from './reference.js';

const BLOB_NAME = /^[0-9a-f]{64}$/;

export class BlobStore {
  /** The directory of the blobs (what QEMU opens as backing files). */
  readonly dir: string;
  /** Downloads in progress. */
  readonly tmpDir: string;

  constructor(
    imageDir: string,
    private readonly log: Logger,
  ) {
    this.dir = join(imageDir, 'blobs', 'sha256');
    this.tmpDir = join(imageDir, 'tmp');
  }

  /** Creates the directories (imageDir too), drops the downloads an earlier run left; returns the names in the blob directory. */
  async open(): Promise<string[]> {
    await mkdir(this.dir, { recursive: true, mode: 0o755 });
    await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.tmpDir, { mode: 0o700 });
    return readdir(this.dir);
  }

  /** Path of the blob of image `id` (`sha256:<hex>`). */
  pathOf(id: string): string {
    return join(this.dir, hexOfId(id));
  }

  /** A new path under tmp/ for a download. */
  tempPath(what: string): string {
    return join(this.tmpDir, `${TEMP_PREFIX}${what}-${randomBytes(8).toString('hex')}`);
  }

  /** Free bytes for downloads (the filesystem of tmp/). */
  async freeBytes(): Promise<number> {
    const fs = await statfs(this.tmpDir);
    return fs.bavail * fs.bsize;
  }

  /**
   * Makes the verified file `tmp` the blob of `id`: readable to QEMU, renamed into place (same
   * filesystem), the directory synced so the blob is there before an index names it.
   */
  async adopt(tmp: string, id: string): Promise<string> {
    const path = this.pathOf(id);
    await chmod(tmp, 0o644);
    await rename(tmp, path);
    await fsyncDir(this.dir);
    return path;
  }

  /** Deletes the blob of `id`; one already gone is fine, any other failure is logged (the next open sweeps it). */
  async delete(id: string): Promise<void> {
    await unlink(this.pathOf(id)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') this.log.warn({ id, err: errorText(err) }, 'cannot delete image blob');
    });
  }

  /** Deletes each blob among `names` (from open) that `isImage` does not claim, and temp files; leaves foreign files alone. */
  async sweep(names: Iterable<string>, isImage: (id: string) => boolean): Promise<void> {
    for (const name of names) {
      if (BLOB_NAME.test(name) && isImage(`sha256:${name}`)) continue;
      if (BLOB_NAME.test(name) || name.startsWith(TEMP_PREFIX)) {
        this.log.info({ blob: name }, 'removing unreferenced image blob');
        await rm(join(this.dir, name), { force: true });
      } else {
        this.log.warn({ file: name }, 'unexpected file in the image blob directory; leaving it alone');
      }
    }
  }
}
