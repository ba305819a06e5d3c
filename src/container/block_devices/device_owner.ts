/**
 * A host device node given to the unprivileged QEMU user (--qemu-user) for as long as a VM uses
 * it, then given back. The node's original owner, group and mode are written to disk (fsynced)
 * BEFORE it is changed, so a vmlet that dies in between still knows what to restore. Several
 * holders (containers) may hold one device: the last one out restores it.
 *
 * Stand-in on branch wt-blockroot for the block data disks helper's ownership code: the root disk
 * calls only giveDevice/returnDevice, so either implementation can sit behind them.
 */
import { createHash } from 'node:crypto';
import { chmod, chown, mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { QemuUser } from '../../vmwrapper/qemu_user.js';

/** QEMU's access: read and write, nobody else but root. */
export const DEVICE_MODE = 0o600;

interface OwnerRecord {
  device: string;
  uid: number;
  gid: number;
  /** Permission bits (07777) before vmlet changed them. */
  mode: number;
  holders: string[];
}

/** One queue per device: gives and returns of the same node never interleave. */
const queues = new Map<string, Promise<unknown>>();
function serialised<T>(device: string, step: () => Promise<T>): Promise<T> {
  const next = (queues.get(device) ?? Promise.resolve()).then(step, step);
  const settled = next.catch(() => undefined);
  queues.set(device, settled);
  void settled.then(() => {
    if (queues.get(device) === settled) queues.delete(device);
  });
  return next;
}

function recordPath(dir: string, device: string): string {
  return join(dir, `${createHash('sha256').update(device).digest('hex').slice(0, 24)}.json`);
}

async function readRecord(path: string): Promise<OwnerRecord | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as OwnerRecord;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function writeRecord(dir: string, path: string, record: OwnerRecord): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(JSON.stringify(record));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** Makes `device` QEMU's (owner qemu user, DEVICE_MODE) on behalf of `holder`; no QEMU user = nothing to do. */
export function giveDevice(dir: string, device: string, holder: string, user: QemuUser | undefined): Promise<void> {
  if (user === undefined) return Promise.resolve();
  return serialised(device, async () => {
    const path = recordPath(dir, device);
    const existing = await readRecord(path);
    if (existing && existing.holders.includes(holder)) return;
    const st = await stat(device);
    const record: OwnerRecord = existing
      ? { ...existing, holders: [...existing.holders, holder] }
      : { device, uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, holders: [holder] };
    await writeRecord(dir, path, record);
    await chown(device, user.uid, user.gid);
    await chmod(device, DEVICE_MODE);
  });
}

/** `holder` is done with `device`; the last holder gives the node its recorded owner and mode back. */
export function returnDevice(dir: string, device: string, holder: string): Promise<void> {
  return serialised(device, async () => {
    const path = recordPath(dir, device);
    const record = await readRecord(path);
    if (!record || !record.holders.includes(holder)) return;
    const holders = record.holders.filter((h) => h !== holder);
    if (holders.length > 0) {
      await writeRecord(dir, path, { ...record, holders });
      return;
    }
    // A device node that went away (the volume was detached) has nothing to restore.
    try {
      await chown(device, record.uid, record.gid);
      await chmod(device, record.mode);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await rm(path, { force: true });
  });
}

/** Under the state dir (the parent of the VMs' directory): one record per device vmlet changed. */
export function deviceOwnersDir(vmDataDir: string): string {
  return join(dirname(vmDataDir), 'device-owners');
}

/**
 * Gives back what holders that no longer exist held (vmlet stopped between giving a device and
 * writing the container's record, or between removing the record and giving it back). Returns the
 * devices given back by their last holder.
 */
export async function returnUnheldDevices(dir: string, exists: (holder: string) => boolean): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const given: string[] = [];
  for (const name of names.filter((n) => n.endsWith('.json'))) {
    const record = await readRecord(join(dir, name));
    if (!record) continue;
    const gone = record.holders.filter((h) => !exists(h));
    for (const holder of gone) await returnDevice(dir, record.device, holder);
    if (gone.length === record.holders.length) given.push(record.device);
  }
  return given;
}
