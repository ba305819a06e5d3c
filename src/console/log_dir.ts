/**
 * Where a container's CRI log may go. The sandbox's `log_directory` is kubelet's
 * (`/var/log/pods/<ns>_<name>_<uid>`), made by kubelet before RunPodSandbox; it is used as it is,
 * a symlink included, because nodes commonly put /var/log/pods on another disk through one. Below
 * it, `log_path` (`<container>/<restart>.log`, relative, no `..`) is vmlet's to create, and there
 * no symlink is followed: each directory between `log_directory` and the file is made here or
 * must already be a real directory, and the file itself is opened with O_NOFOLLOW by the log pump.
 * So a log file can never land outside the directory kubelet named.
 */
import { lstat, mkdir } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { InvalidArgumentError } from '../errors.js';

const LOG_DIR_MODE = 0o755;

/**
 * Creates the directories of `relLogPath` (already checked relative and normalised) below
 * `logDirectory`, refusing a component that is a symlink or not a directory.
 */
export async function prepareContainerLogDir(logDirectory: string, relLogPath: string): Promise<void> {
  // kubelet makes log_directory; a client that did not (crictl with a fresh path) gets it made.
  await mkdir(logDirectory, { recursive: true, mode: LOG_DIR_MODE });
  const parts = relLogPath.split(sep).slice(0, -1);
  let dir = logDirectory;
  for (const part of parts) {
    dir = join(dir, part);
    try {
      await mkdir(dir, { mode: LOG_DIR_MODE });
      continue;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const st = await lstat(dir);
    if (st.isSymbolicLink()) throw new InvalidArgumentError(`config.log_path: ${dir} is a symlink; vmlet does not follow symlinks below the sandbox's log_directory`);
    if (!st.isDirectory()) throw new InvalidArgumentError(`config.log_path: ${dir} exists and is not a directory`);
  }
}
