/**
 * Writes a cloud-init seed ISO: built in memory (src/guest/iso9660.ts, ISO 9660 with Joliet names)
 * and put at its path atomically (temp file beside it, fsync, rename, directory fsync), so a
 * reader or a crash sees either no ISO / the old one or the whole new one.
 */
import { stat } from 'node:fs/promises';
import { dirname, isAbsolute, normalize } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError } from '../errors.js';
import { writeFileAtomic } from '../store/atomic_file.js';
import type { SyncBehind } from '../store/sync_behind.js';
import { buildIso9660 } from './iso9660.js';
import type { SeedDocuments } from './cloudinit.js';

/** Volume labels cloud-init looks for. */
export const SEED_VOLUME_ID = { nocloud: 'cidata', configdrive: 'config-2' } as const;

/** Files of the seed, as paths relative to the ISO root (fixed names: no traversal possible). */
export function seedFiles(seed: SeedDocuments): Array<{ path: string; content: string }> {
  if (seed.kind === 'nocloud') {
    return [
      { path: 'meta-data', content: seed.metaData },
      { path: 'user-data', content: seed.userData },
      { path: 'network-config', content: seed.networkConfig },
    ];
  }
  return [
    { path: 'openstack/latest/meta_data.json', content: seed.metaData },
    { path: 'openstack/latest/user_data', content: seed.userData },
    { path: 'openstack/latest/network_data.json', content: seed.networkData },
  ];
}

/** The seed ISO's bytes. Pure (`date` stamps the volume and its entries). */
export function seedIsoImage(seed: SeedDocuments, date: Date): Buffer {
  const files = seedFiles(seed).map((f) => ({ path: f.path, content: Buffer.from(f.content, 'utf8') }));
  return buildIso9660(files, SEED_VOLUME_ID[seed.kind], date);
}

/**
 * Builds the seed ISO for `seed` and atomically puts it at `path` (mode 0644); with `syncBehind`
 * it is made durable right after instead of before returning.
 */
export async function writeSeedIso(path: string, seed: SeedDocuments, syncBehind?: SyncBehind): Promise<void> {
  // eslint-disable-next-line no-control-regex
  if (!isAbsolute(path) || normalize(path) !== path || path.endsWith('/') || /[\u0000-\u001f\u007f]/.test(path)) {
    throw new InvalidArgumentError(`seed ISO path must be an absolute normalized path: ${JSON.stringify(path)}`);
  }
  const dir = dirname(path);
  // The directory is the caller's (e.g. the container's directory, which QEMU's user must be able
  // to traverse); creating it here with guessed permissions could lock QEMU out.
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new FailedPreconditionError(`directory for the seed ISO does not exist: ${dir}`);
  await writeFileAtomic(path, seedIsoImage(seed, new Date()), { mode: 0o644, ...(syncBehind ? { syncBehind } : {}) });
}
