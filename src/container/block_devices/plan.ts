/**
 * Which CRI devices become which VM disks. MINIMAL VERSION on branch wt-blockroot: it only knows
 * the persistent root disk (container_path "/"); the block data disks helper (wt-blockdata) owns
 * this module and its full version replaces this one at merge.
 */
import { realpath, stat } from 'node:fs/promises';
import { InvalidArgumentError } from '../../errors.js';

/** A CRI Device (runtime.v1): a host device node and where the pod wants it. */
export interface CriDevice {
  container_path: string;
  host_path: string;
  /** cgroup permissions: any of r, w, m. */
  permissions: string;
}

export interface BlockDisk {
  /** Resolved real path under /dev, a block device. */
  hostPath: string;
  containerPath: string;
  readOnly: boolean;
  serial: string;
}

export interface BlockDevicePlan {
  dataDisks: BlockDisk[];
  /** The device with container_path '/' (Virtlet's persistent root convention). */
  root?: BlockDisk;
}

/** What planBlockDevices asks of the host. */
export interface DeviceInspector {
  realpath(path: string): Promise<string>;
  isBlockDevice(path: string): Promise<boolean>;
}

export const hostDeviceInspector: DeviceInspector = {
  realpath: (path) => realpath(path),
  isBlockDevice: async (path) => (await stat(path)).isBlockDevice(),
};

export async function planBlockDevices(devices: CriDevice[], inspect: DeviceInspector): Promise<BlockDevicePlan> {
  const plan: BlockDevicePlan = { dataDisks: [] };
  for (const [i, d] of devices.entries()) {
    const name = `config.devices[${i}] (${d.host_path} -> ${d.container_path})`;
    if (d.container_path !== '/') throw new InvalidArgumentError(`${name}: only a persistent root disk (container_path "/") is supported`);
    if (plan.root) throw new InvalidArgumentError(`${name}: a second device with container_path "/"`);
    let hostPath: string;
    try {
      hostPath = await inspect.realpath(d.host_path);
    } catch {
      throw new InvalidArgumentError(`${name}: host path does not exist`);
    }
    if (!hostPath.startsWith('/dev/')) throw new InvalidArgumentError(`${name}: resolves to ${hostPath}, outside /dev`);
    if (!(await inspect.isBlockDevice(hostPath))) throw new InvalidArgumentError(`${name}: ${hostPath} is not a block device`);
    plan.root = { hostPath, containerPath: '/', readOnly: !d.permissions.includes('w'), serial: 'vmlet-root' };
  }
  return plan;
}
