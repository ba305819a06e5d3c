import { lstat, readdir, readFile, realpath } from 'node:fs/promises';
import { join } from 'node:path';

/** Mount points listed in /proc/self/mountinfo text (field 5, with its octal escapes undone). */
export function parseMountPoints(mountinfo: string): string[] {
  const out: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ');
    if (fields.length < 5 || fields[4] === undefined) continue;
    out.push(fields[4].replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8))));
  }
  return out;
}

/** The longest mount point that contains `path` (an absolute, symlink-free path). */
export function longestMountPoint(mountPoints: readonly string[], path: string): string {
  let best = '/';
  for (const mp of mountPoints) {
    const inside = mp === '/' || path === mp || path.startsWith(`${mp}/`);
    if (inside && mp.length > best.length) best = mp;
  }
  return best;
}

/** Mount point of the filesystem holding `dir`. */
export async function mountPointOf(dir: string): Promise<string> {
  const real = await realpath(dir);
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return longestMountPoint(parseMountPoints(text), real);
}

/**
 * Bytes allocated on disk (st_blocks × 512, which is what a sparse file really costs) and inodes
 * of everything under `dir`, `dir` included. Symlinks are counted, never followed.
 */
export async function diskUsage(dir: string): Promise<{ bytes: bigint; inodes: bigint }> {
  let bytes = 0n;
  let inodes = 0n;
  const walk = async (path: string): Promise<void> => {
    let st;
    try {
      st = await lstat(path, { bigint: true });
    } catch {
      return; // removed while we walked
    }
    bytes += st.blocks * 512n;
    inodes += 1n;
    if (!st.isDirectory()) return;
    let names: string[];
    try {
      names = await readdir(path);
    } catch {
      return;
    }
    for (const name of names) await walk(join(path, name));
  };
  await walk(dir);
  return { bytes, inodes };
}
