/**
 * A block device opened by vmlet for a QEMU that cannot open it itself: a warm VM's QEMU gets the
 * fd over its QMP socket (warm/adopt.ts). Opened without following a symlink, and refused unless
 * it is (still) a block device: the node was checked by path earlier (plan.ts) and could have
 * been swapped since.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { FailedPreconditionError, errorText } from '../../errors.js';

export interface OpenedDevice {
  readonly fd: number;
  close(): Promise<void>;
}

/** Opens a device node read-only or read-write (the host's in production; a fake in unit tests). */
export type DeviceOpener = (path: string, readOnly: boolean) => Promise<OpenedDevice>;

export const hostDeviceOpener: DeviceOpener = async (path, readOnly) => {
  let handle;
  try {
    handle = await open(path, (readOnly ? constants.O_RDONLY : constants.O_RDWR) | constants.O_NOFOLLOW);
  } catch (err) {
    throw new FailedPreconditionError(`cannot open block device ${path}: ${errorText(err)}`, { cause: err });
  }
  try {
    if (!(await handle.stat()).isBlockDevice()) throw new FailedPreconditionError(`${path} is no longer a block device`);
  } catch (err) {
    await handle.close();
    throw err;
  }
  return { fd: handle.fd, close: () => handle.close() };
};
