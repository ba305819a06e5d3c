/**
 * Installs the vmwrapper launcher (launcher.ts) where libvirt can run it as an <emulator>.
 *
 * libvirt executes that file as root with every capability, so whoever can change it owns the
 * host: the file and every directory above it must be root's and writable by nobody else, and
 * installVmwrapper refuses to install anywhere else.
 *
 * The file is rewritten only when its content or mode differ. Besides saving a write, that keeps
 * its ctime: libvirt re-probes an emulator's capabilities (tens of seconds under TCG, blocking
 * domain starts) whenever the emulator file's ctime changes.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError, errorText } from '../errors.js';
import { fsyncDir } from '../store/atomic_file.js';
import { LAUNCHER_MARKER, renderLauncher, type LauncherOptions } from './launcher.js';

export const DEFAULT_VMWRAPPER_DIR = '/usr/local/lib/vmlet';
export const VMWRAPPER_FILE_NAME = 'vmwrapper';
export const DEFAULT_QEMU_PATH = '/usr/bin/qemu-system-x86_64';
export const DEFAULT_NSENTER_PATH = '/usr/bin/nsenter';
export const DEFAULT_SETPRIV_PATH = '/usr/bin/setpriv';
const LAUNCHER_MODE = 0o755;
const MAX_LAUNCHER_BYTES = 64 * 1024;

export interface InstallVmwrapperOptions {
  qemuPath?: string;
  nsenterPath?: string;
  setprivPath?: string;
  /** QEMU's unprivileged uid/gid; absent = uid 0 without capabilities. */
  qemuUser?: { uid: number; gid: number };
}

/**
 * The launcher's file name: `vmwrapper` for uid 0, `vmwrapper-<uid>` with a QEMU user. One file
 * per variant, so two vmlet instances with different --qemu-user never rewrite each other's
 * launcher under running domains (and libvirt caches each path's capabilities once).
 */
export function vmwrapperFileName(qemuUser?: { uid: number }): string {
  return qemuUser === undefined ? VMWRAPPER_FILE_NAME : `${VMWRAPPER_FILE_NAME}-${qemuUser.uid}`;
}

/**
 * Writes the launcher to `dir`/vmwrapper (creating `dir` if needed) and returns its path, the
 * value for a domain's <emulator>. Idempotent; atomic (a reader sees the old or the new file).
 * Throws FailedPreconditionError when a tool is missing or `dir` is not safe for a root-run file.
 */
export async function installVmwrapper(dir: string = DEFAULT_VMWRAPPER_DIR, options: InstallVmwrapperOptions = {}): Promise<string> {
  if (typeof dir !== 'string' || !isAbsolute(dir) || normalize(dir) !== dir || (dir.endsWith('/') && dir !== '/')) {
    throw new InvalidArgumentError(`vmwrapper dir ${JSON.stringify(dir)} must be an absolute normalized path`);
  }
  const launcherOptions: Omit<LauncherOptions, 'qemuIdentity'> = {
    qemuPath: options.qemuPath ?? DEFAULT_QEMU_PATH,
    nsenterPath: options.nsenterPath ?? DEFAULT_NSENTER_PATH,
    setprivPath: options.setprivPath ?? DEFAULT_SETPRIV_PATH,
  };
  const qemuIdentity = await executableIdentity('QEMU', launcherOptions.qemuPath);
  await executableIdentity('nsenter', launcherOptions.nsenterPath);
  await executableIdentity('setpriv', launcherOptions.setprivPath);
  const content = renderLauncher({ ...launcherOptions, qemuIdentity, ...(options.qemuUser ? { qemuUser: options.qemuUser } : {}) });

  // Checked before mkdir (nothing is created under an unsafe parent) and after (what now exists).
  await assertRootOnlyWritable(dir, true);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await assertRootOnlyWritable(dir, false);
  const path = join(dir, vmwrapperFileName(options.qemuUser));
  if (await isInstalled(path, content)) return path;
  await writeExecutableAtomic(path, content);
  return path;
}

/** "PATH size=… mtime=… ino=…" of an executable regular file; changes when the file is replaced. */
async function executableIdentity(what: string, path: string): Promise<string> {
  let st;
  try {
    st = await stat(path, { bigint: true });
  } catch (err) {
    throw new FailedPreconditionError(`${what} ${path} is not available: ${errorText(err)}`, { cause: err });
  }
  if (!st.isFile() || (st.mode & 0o111n) === 0n) {
    throw new FailedPreconditionError(`${what} ${path} is not an executable file`);
  }
  return `${path} size=${st.size} mtime=${st.mtimeNs} ino=${st.ino}`;
}

/** `dir` and every directory above it: owned by root, not writable by group or others. */
async function assertRootOnlyWritable(dir: string, allowMissing: boolean): Promise<void> {
  for (let current = dir; ; current = dirname(current)) {
    let st;
    try {
      st = await lstat(current);
    } catch (err) {
      if (allowMissing && (err as NodeJS.ErrnoException).code === 'ENOENT' && current !== '/') continue;
      throw err;
    }
    if (!st.isDirectory()) {
      throw new FailedPreconditionError(`vmwrapper dir: ${current} is not a directory (symlinks are refused)`);
    }
    if (st.uid !== 0 || (st.mode & 0o022) !== 0) {
      throw new FailedPreconditionError(
        `vmwrapper dir: ${current} must be owned by root and not writable by group or others ` +
          `(uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)}): libvirt runs the launcher as root`,
      );
    }
    if (current === '/') return;
  }
}

/** True when `path` is already exactly this launcher: a root-owned regular file, mode 0755. */
async function isInstalled(path: string, content: string): Promise<boolean> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  if (!st.isFile()) {
    throw new FailedPreconditionError(`${path} exists and is not a regular file; remove it`);
  }
  // A launcher is about 1.5 KiB; a big file there is not ours (and is not read into memory).
  const existing = st.size <= MAX_LAUNCHER_BYTES ? await readFile(path, 'utf8') : '';
  // Only a file this function wrote may be replaced; anything else is someone's and stays.
  if (existing.split('\n', 2)[1]?.startsWith(LAUNCHER_MARKER) !== true) {
    throw new FailedPreconditionError(`${path} exists and is not a vmlet launcher; remove it`);
  }
  return existing === content && st.uid === 0 && (st.mode & 0o7777) === LAUNCHER_MODE;
}

/** Temp file beside the target, mode set explicitly (umask does not apply), fsync, rename, fsync dir. */
async function writeExecutableAtomic(path: string, content: string): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.tmp-vmwrapper.${randomBytes(6).toString('hex')}`);
  const fh = await open(tmp, 'wx', 0o700);
  try {
    await fh.writeFile(content);
    await fh.chmod(LAUNCHER_MODE);
    await fh.sync();
    await fh.close();
    await rename(tmp, path);
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await fsyncDir(dir);
}
