/**
 * A CRI mount's host path, resolved without trusting it: every component is looked at with
 * lstat, and a symlink is followed only when it stays inside the directory that holds it
 * (ConfigMap volumes' `..data -> ..2024_…` and `key -> ..data/key` do; a link planted to reach
 * `/etc` from a pod-writable directory does not). What is left must be a directory or a regular
 * file: device nodes, sockets and FIFOs cannot be shared with a VM.
 */
import { lstat, readlink } from 'node:fs/promises';
import { isAbsolute, join, normalize, relative } from 'node:path';
import { InvalidArgumentError } from '../../errors.js';

export type HostPathKind = 'dir' | 'file';

export interface ResolvedHostPath {
  /** The real path: no symlink in it. */
  path: string;
  kind: HostPathKind;
}

/** Linux's own limit on symlinks followed in one lookup. */
const MAX_SYMLINKS = 40;

/** `name` labels the mount in errors (e.g. "config.mounts[2] (/etc/config)"). */
export async function resolveHostPath(hostPath: string, name: string): Promise<ResolvedHostPath> {
  if (!isAbsolute(hostPath) || normalize(hostPath) !== hostPath || hostPath.split('/').includes('..')) {
    throw new InvalidArgumentError(`${name}: host path ${JSON.stringify(hostPath)} is not an absolute normalized path`);
  }
  let resolved = '/';
  const pending = hostPath.split('/').filter((p) => p !== '' && p !== '.');
  let links = 0;
  while (pending.length > 0) {
    const next = join(resolved, pending.shift()!);
    const st = await lstat(next).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw new InvalidArgumentError(`${name}: host path ${JSON.stringify(hostPath)} does not exist (${next} is missing)`);
      if (err.code === 'ENOTDIR') throw new InvalidArgumentError(`${name}: host path ${JSON.stringify(hostPath)} goes through a file where a directory is expected (${resolved})`);
      throw new InvalidArgumentError(`${name}: host path ${JSON.stringify(hostPath)} cannot be read: ${err.code ?? err.message}`);
    });
    if (!st.isSymbolicLink()) {
      if (pending.length > 0 && !st.isDirectory()) {
        throw new InvalidArgumentError(`${name}: host path ${JSON.stringify(hostPath)} goes through ${next}, which is not a directory`);
      }
      resolved = next;
      continue;
    }
    if (++links > MAX_SYMLINKS) throw new InvalidArgumentError(`${name}: host path ${JSON.stringify(hostPath)} has too many symlinks`);
    const target = await readlink(next);
    const targetPath = isAbsolute(target) ? normalize(target) : join(resolved, target);
    const rest = relative(resolved, targetPath);
    if (rest === '..' || rest.startsWith('../') || isAbsolute(rest)) {
      throw new InvalidArgumentError(`${name}: host path ${JSON.stringify(hostPath)}: symlink ${next} -> ${JSON.stringify(target)} leads outside ${resolved}`);
    }
    pending.unshift(...rest.split('/').filter((p) => p !== '' && p !== '.'));
  }
  const st = await lstat(resolved);
  if (st.isDirectory()) return { path: resolved, kind: 'dir' };
  if (st.isFile()) return { path: resolved, kind: 'file' };
  throw new InvalidArgumentError(`${name}: host path ${JSON.stringify(hostPath)} is neither a directory nor a regular file (device nodes, sockets and FIFOs cannot be shared with a VM)`);
}
