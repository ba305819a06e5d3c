/**
 * Writes a cloud-init seed ISO with genisoimage.
 *
 * The documents are laid out in a private temp directory beside the target (same filesystem, so
 * the final rename is atomic), genisoimage builds the image there, and the image is fsynced and
 * renamed over `path`: a reader or a crash sees either no ISO / the old one or the whole new one.
 * On any failure the temp directory is removed. Its name starts with the store's TEMP_PREFIX so
 * a directory scan can collect leftovers of a crash.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, open, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, normalize } from 'node:path';
import { promisify } from 'node:util';
import { FailedPreconditionError, InternalError, InvalidArgumentError } from '../errors.js';
import { fsyncDir, TEMP_PREFIX } from '../store/atomic_file.js';
import type { SeedDocuments } from './cloudinit.js';

const execFileAsync = promisify(execFile);

/** Volume labels cloud-init looks for. */
export const SEED_VOLUME_ID = { nocloud: 'cidata', configdrive: 'config-2' } as const;

export interface SeedIsoOptions {
  /** genisoimage binary; default from PATH. */
  genisoimage?: string;
  /** Kill genisoimage after this long; default 30 s. */
  timeoutMs?: number;
}

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

/** Builds the seed ISO for `seed` and atomically puts it at `path` (mode 0644). */
export async function writeSeedIso(path: string, seed: SeedDocuments, options: SeedIsoOptions = {}): Promise<void> {
  // eslint-disable-next-line no-control-regex
  if (!isAbsolute(path) || normalize(path) !== path || path.endsWith('/') || /[\u0000-\u001f\u007f]/.test(path)) {
    throw new InvalidArgumentError(`seed ISO path must be an absolute normalized path: ${JSON.stringify(path)}`);
  }
  const dir = dirname(path);
  // The directory is the caller's (e.g. the container's directory, which QEMU's user must be able
  // to traverse); creating it here with guessed permissions could lock QEMU out.
  let tmp: string;
  try {
    // mkdtemp creates the directory with mode 0700: nobody else can plant files in it.
    tmp = await mkdtemp(join(dir, `${TEMP_PREFIX}${basename(path)}.`));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new FailedPreconditionError(`directory for the seed ISO does not exist: ${dir}`, { cause: err });
    }
    throw err;
  }
  try {
    const tree = join(tmp, 'tree');
    for (const file of seedFiles(seed)) {
      const target = join(tree, file.path);
      await mkdir(dirname(target), { recursive: true, mode: 0o700 });
      await writeFile(target, file.content, { mode: 0o600, flag: 'wx' });
    }
    const iso = join(tmp, 'seed.iso');
    await runGenisoimage(options, [
      '-output',
      iso,
      '-volid',
      SEED_VOLUME_ID[seed.kind],
      '-joliet',
      '-rock',
      '-input-charset',
      'utf-8',
      '-quiet',
      tree,
    ]);
    const fh = await open(iso, 'r+');
    try {
      await fh.chmod(0o644);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(iso, path);
    await fsyncDir(dir);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function runGenisoimage(options: SeedIsoOptions, args: string[]): Promise<void> {
  const binary = options.genisoimage ?? 'genisoimage';
  try {
    await execFileAsync(binary, args, {
      timeout: options.timeoutMs ?? 30_000,
      killSignal: 'SIGKILL',
      maxBuffer: 1024 * 1024,
      env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string; killed?: boolean; signal?: string };
    if (e.code === 'ENOENT') {
      throw new FailedPreconditionError(`${binary} not found: install genisoimage to build cloud-init seeds`, { cause: err });
    }
    const why = e.killed ? `killed (${e.signal ?? 'timeout'})` : (e.stderr ?? '').trim().split('\n').slice(-3).join('; ') || e.message;
    throw new InternalError(`${binary} failed to build the seed ISO: ${why}`, { cause: err });
  }
}
