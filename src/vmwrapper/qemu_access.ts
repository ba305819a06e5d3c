/**
 * What the unprivileged QEMU user (qemu_user.ts) may touch, set on the files vmlet makes. QEMU opens
 * these by path after the launcher dropped it to that uid/gid, so each gets exactly the access it
 * needs and nothing else of vmlet's state does:
 *
 * | what                               | owner:group    | mode | QEMU can        |
 * |------------------------------------|----------------|------|-----------------|
 * | root disk overlay                  | qemu:qemu      | 0600 | read and write  |
 * | image blob (the overlay's backing) | root:root      | 0644 | read only       |
 * | seed ISO                           | root:qemu      | 0640 | read only       |
 * | the VM's directory                 | root:qemu      | 0710 | traverse        |
 * | state dir, its vms/                | root:qemu      | g+x  | traverse        |
 * | state dir's qmp/ (warm VMs' QMP)   | root:qemu      | 0770 | bind its socket |
 *
 * Console, guest-agent and libvirt monitor sockets are bound by libvirt and handed to QEMU as file
 * descriptors; the console log is written by virtlogd. With no QEMU user (root) nothing changes.
 */
import { chmod, chown, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FailedPreconditionError } from '../errors.js';
import type { QemuUser } from './qemu_user.js';

export const OVERLAY_MODE = 0o600;
export const SEED_MODE = 0o640;
export const VM_DIR_MODE = 0o710;
export const SOCKET_DIR_MODE = 0o770;

/** The root disk overlay: QEMU's own, read and write. */
export async function giveOverlay(path: string, user: QemuUser | undefined): Promise<void> {
  if (user === undefined) return;
  await chown(path, user.uid, user.gid);
  await chmod(path, OVERLAY_MODE);
}

/** The seed ISO: QEMU reads it (a read-only CD-ROM). */
export async function giveSeed(path: string, user: QemuUser | undefined): Promise<void> {
  if (user === undefined) return;
  await chown(path, 0, user.gid);
  await chmod(path, SEED_MODE);
}

/** A VM's directory: QEMU reaches its files by name but cannot list or create anything there. */
export async function giveVmDir(dir: string, user: QemuUser | undefined): Promise<void> {
  if (user === undefined) return;
  await chown(dir, 0, user.gid);
  await chmod(dir, VM_DIR_MODE);
}

/** The warm VMs' QMP socket directory: QEMU binds (and on exit removes) its socket there. */
export async function giveSocketDir(dir: string, user: QemuUser | undefined): Promise<void> {
  if (user === undefined) return;
  await chown(dir, 0, user.gid);
  await chmod(dir, SOCKET_DIR_MODE);
}

/** A directory of vmlet's on the way to the VM files: group QEMU, group traverse added. */
export async function giveTraverse(dir: string, user: QemuUser | undefined): Promise<void> {
  if (user === undefined) return;
  const st = await stat(dir);
  await chown(dir, st.uid, user.gid);
  await chmod(dir, (st.mode & 0o7777) | 0o010);
}

/** Pure: can `user` search (traverse) a directory with these owner/group/mode bits? */
export function canTraverse(st: { uid: number; gid: number; mode: number }, user: QemuUser): boolean {
  if (st.uid === user.uid) return (st.mode & 0o100) !== 0;
  if (st.gid === user.gid) return (st.mode & 0o010) !== 0;
  return (st.mode & 0o001) !== 0;
}

/**
 * Checks that `user` can traverse `dir` and every directory above it, so that QEMU reaches the
 * files vmlet gives it below. vmlet does not change directories it did not make: a state or image
 * dir under a private (0700) parent fails here with the directory named.
 */
export async function assertQemuCanReach(dir: string, user: QemuUser | undefined, what: string): Promise<void> {
  if (user === undefined) return;
  for (let current = dir; ; current = dirname(current)) {
    const st = await stat(current);
    if (!canTraverse(st, user)) {
      throw new FailedPreconditionError(
        `${what} ${dir}: QEMU's user ${user.name} (uid ${user.uid}) cannot traverse ${current} ` +
          `(owner ${st.uid}:${st.gid}, mode ${(st.mode & 0o7777).toString(8)}); allow it (e.g. chmod o+x) or use --qemu-user root`,
      );
    }
    if (current === dirname(current)) return;
  }
}
