/**
 * A VM's block devices, made accessible to its unprivileged QEMU (src/vmwrapper/qemu_user.ts) for
 * the VM's lifetime and given back after: the node's owner becomes the QEMU user, mode 0600 (0400
 * for a read-only disk), its group kept; nothing else gains access, and no capability is given.
 *
 * Each node's original owner, group and mode are written to <dir>/<container id>.json, durably,
 * BEFORE the first change, so that whatever stops vmlet half-way (a crash, a kill), the next
 * reconcile gives back what the file names. A node is given back only while it is still the same
 * device (st_rdev): a path reused for another device is left alone.
 *
 * A device granted to one VM is refused to another (FAILED_PRECONDITION) until given back: two
 * QEMUs writing one disk without a cluster file system would corrupt it.
 */
import { chmod, chown, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { FailedPreconditionError, errorText } from '../../errors.js';
import type { Logger } from '../../log.js';
import { dirChanged, writeFileAtomic } from '../../store/atomic_file.js';
import type { QemuUser } from '../../vmwrapper/qemu_user.js';
import type { BlockDisk } from './plan.js';

/** The node calls a grant makes (fs in production; a fake in unit tests). */
export interface NodeOps {
  stat(path: string): Promise<{ uid: number; gid: number; mode: number; rdev: number }>;
  chown(path: string, uid: number, gid: number): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
}

export const hostNodeOps: NodeOps = {
  stat: async (path) => {
    const st = await stat(path);
    return { uid: st.uid, gid: st.gid, mode: st.mode, rdev: st.rdev };
  },
  chown,
  chmod,
};

/** One node as it was before the grant. */
export interface GrantedNode {
  path: string;
  rdev: number;
  uid: number;
  gid: number;
  /** Permission bits (07777) before the grant. */
  mode: number;
}

interface GrantFile {
  version: 1;
  containerId: string;
  nodes: GrantedNode[];
}

const ID = /^[0-9a-f]{64}$/;
export const READ_WRITE_MODE = 0o600;
export const READ_ONLY_MODE = 0o400;

export class DeviceGrants {
  /** Serialises grants so that two creates cannot both take one device. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly dir: string,
    private readonly logger: Logger,
    private readonly ops: NodeOps = hostNodeOps,
  ) {}

  /**
   * Gives `disks` to `user` for container `id`. With no QEMU user (QEMU as root) nothing changes
   * on the nodes, but the record still marks them in use. On failure everything is given back.
   */
  grant(id: string, disks: readonly BlockDisk[], user: QemuUser | undefined): Promise<void> {
    const run = this.chain.then(() => this.grantNow(id, disks, user));
    this.chain = run.catch(() => {});
    return run;
  }

  private async grantNow(id: string, disks: readonly BlockDisk[], user: QemuUser | undefined): Promise<void> {
    checkId(id);
    if (disks.length === 0) return;
    const nodes: GrantedNode[] = [];
    for (const d of disks) {
      const st = await this.ops.stat(d.hostPath);
      nodes.push({ path: d.hostPath, rdev: st.rdev, uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 });
    }
    for (const other of await this.read()) {
      if (other.containerId === id) continue;
      const taken = other.nodes.find((n) => nodes.some((m) => m.rdev === n.rdev));
      if (taken) throw new FailedPreconditionError(`block device ${taken.path} is attached to container ${other.containerId}; a device goes to one VM at a time`);
    }
    await writeFileAtomic(this.path(id), `${JSON.stringify({ version: 1, containerId: id, nodes } satisfies GrantFile, null, 2)}\n`);
    if (user === undefined) return;
    try {
      for (const [i, d] of disks.entries()) {
        await this.ops.chown(d.hostPath, user.uid, nodes[i]!.gid);
        await this.ops.chmod(d.hostPath, d.readOnly ? READ_ONLY_MODE : READ_WRITE_MODE);
      }
    } catch (err) {
      await this.restore(id).catch((e: unknown) => this.logger.error({ err: errorText(e), containerId: id }, 'could not give block devices back after a failed grant'));
      throw new FailedPreconditionError(`cannot give block devices to QEMU's user ${user.name}: ${errorText(err)}`, { cause: err });
    }
  }

  /** Gives back every node granted for `id` (idempotent: no record, nothing to do). */
  async restore(id: string): Promise<void> {
    checkId(id);
    const path = this.path(id);
    let file: GrantFile;
    try {
      file = JSON.parse(await readFile(path, 'utf8')) as GrantFile;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      this.logger.error({ err: errorText(err), path }, 'unreadable block device grant record; removing it');
      await rm(path, { force: true });
      return;
    }
    let failed: unknown;
    for (const n of file.nodes ?? []) {
      try {
        const st = await this.ops.stat(n.path);
        if (st.rdev !== n.rdev) {
          this.logger.warn({ path: n.path, containerId: id }, 'block device node now names another device; its owner is left alone');
          continue;
        }
        await this.ops.chown(n.path, n.uid, n.gid);
        await this.ops.chmod(n.path, n.mode);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // the device went away
        failed = err;
        this.logger.error({ err: errorText(err), path: n.path, containerId: id }, 'could not give a block device back');
      }
    }
    if (failed !== undefined) throw failed; // the record stays: the next reconcile tries again
    await rm(path, { force: true });
    await dirChanged(this.dir);
  }

  /** Container ids holding grants (for reconcile). */
  async list(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => n.endsWith('.json') && ID.test(n.slice(0, -5))).map((n) => n.slice(0, -5));
  }

  private async read(): Promise<GrantFile[]> {
    const out: GrantFile[] = [];
    for (const id of await this.list()) {
      try {
        out.push(JSON.parse(await readFile(this.path(id), 'utf8')) as GrantFile);
      } catch {
        // vanished or unreadable: restore() deals with it
      }
    }
    return out;
  }

  private path(id: string): string {
    return join(this.dir, `${id}.json`);
  }
}

function checkId(id: string): void {
  if (!ID.test(id)) throw new FailedPreconditionError(`container id ${JSON.stringify(id)} is not 64 hex digits`);
}
