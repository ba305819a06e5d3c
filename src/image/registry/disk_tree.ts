import { FailedPreconditionError } from '../../errors.js';

/**
 * The files under `disk/` as the image's layers build them up, with OCI whiteouts applied
 * (image-spec layer.md: `.wh.<name>` hides `<name>` of lower layers, `.wh..wh..opq` hides every
 * lower-layer entry of its directory). Pure bookkeeping: the payload of each file (for the
 * puller, a temp file) is handed back when a later entry replaces or hides it.
 */

export const DISK_DIR = 'disk';
const WHITEOUT_PREFIX = '.wh.';
const OPAQUE = '.wh..wh..opq';

export type EntryKind = 'file' | 'directory' | 'other';

export type EntryDecision<T> =
  | { action: 'skip'; released: T[] }
  /** A regular file under disk/: the caller writes it and calls `add`. */
  | { action: 'write'; path: string; released: T[] };

/**
 * Normalizes a tar entry name: no leading `/` or `./`, no empty or `.` components, no trailing
 * `/`. Returns undefined for a name that climbs out with `..` (such an entry cannot be the disk).
 */
export function normalizeEntryPath(name: string): string | undefined {
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') return undefined;
    parts.push(part);
  }
  return parts.join('/');
}

function under(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}

export class DiskTree<T> {
  private readonly files = new Map<string, { layer: number; payload: T }>();

  /**
   * Decides what to do with one entry of layer `layer`. Refuses (FailedPreconditionError)
   * anything under disk/ that is neither a regular file nor a directory, and a non-directory
   * named `disk`.
   */
  entry(rawName: string, kind: EntryKind, typeName: string, layer: number): EntryDecision<T> {
    const path = normalizeEntryPath(rawName);
    if (path === undefined || path === '') return { action: 'skip', released: [] };
    const slash = path.lastIndexOf('/');
    const dir = slash < 0 ? '' : path.slice(0, slash);
    const base = path.slice(slash + 1);
    if (base === OPAQUE) return { action: 'skip', released: this.hide(dir, layer, true) };
    if (base.startsWith(WHITEOUT_PREFIX)) {
      const target = dir === '' ? base.slice(WHITEOUT_PREFIX.length) : `${dir}/${base.slice(WHITEOUT_PREFIX.length)}`;
      return { action: 'skip', released: this.hide(target, layer, false) };
    }
    if (!under(path, DISK_DIR)) return { action: 'skip', released: [] };
    if (path === DISK_DIR) {
      if (kind !== 'directory') refuse(`/${DISK_DIR} is a ${typeName}, not a directory`);
      return { action: 'skip', released: [] };
    }
    if (kind === 'directory') return { action: 'skip', released: [] };
    if (kind === 'other') refuse(`/${path} is a ${typeName}; the disk must be a regular file`);
    // A later entry of the same path replaces the earlier one.
    const released: T[] = [];
    const old = this.files.get(path);
    if (old) {
      released.push(old.payload);
      this.files.delete(path);
    }
    return { action: 'write', path, released };
  }

  /** Records the file the caller wrote for a `write` decision. */
  add(path: string, layer: number, payload: T): void {
    this.files.set(path, { layer, payload });
  }

  /** Files hidden by a whiteout of `target` (or, opaque, of everything below `target`) from lower layers. */
  private hide(target: string, layer: number, opaque: boolean): T[] {
    const released: T[] = [];
    for (const [path, f] of this.files) {
      if (f.layer >= layer) continue;
      const hit = opaque ? target === '' || path.startsWith(`${target}/`) : under(path, target);
      if (hit) {
        released.push(f.payload);
        this.files.delete(path);
      }
    }
    return released;
  }

  /** Every payload still held (for cleanup). */
  payloads(): T[] {
    return [...this.files.values()].map((f) => f.payload);
  }

  /** The one disk file of the finished image; refuses none or several. */
  result(): { path: string; payload: T } {
    const paths = [...this.files.keys()].sort();
    if (paths.length === 0) refuse(`no regular file under /${DISK_DIR}/ (a containerDisk holds its disk image there)`);
    if (paths.length > 1) refuse(`${paths.length} files under /${DISK_DIR}/ (${paths.map((p) => `/${p}`).join(', ')}); a containerDisk holds exactly one`);
    const path = paths[0]!;
    return { path, payload: this.files.get(path)!.payload };
  }
}

function refuse(what: string): never {
  throw new FailedPreconditionError(`containerDisk refused: ${what}`);
}
