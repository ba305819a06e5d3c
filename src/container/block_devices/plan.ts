/**
 * Which CRI `devices` become disks of the VM. kubelet hands a pod's raw block volumes
 * (`volumeMode: Block`, `volumeDevices`) to the runtime as devices: `host_path` a block device
 * node (often a symlink kubelet made to it), `container_path` the pod's devicePath, `permissions`
 * some of r, w, m. A device is accepted only when its host path, every symlink followed, is a
 * block device node under /dev; anything else (a char device, a regular file, a missing path, a
 * path with `..`, a symlink leading out of /dev) is refused by name with INVALID_ARGUMENT before
 * anything is changed. `container_path` "/" is Virtlet's persistent root disk (plan.root).
 *
 * The guest finds a disk by its virtio serial (/dev/disk/by-id/virtio-<serial>), derived from
 * container_path alone so that the same volume at the same path has the same serial in every pod.
 */
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { InvalidArgumentError } from '../../errors.js';

/** One CRI Device as kubelet sends it (field names as in the CRI, so records keep them as given). */
export interface CriDevice {
  container_path: string;
  host_path: string;
  permissions: string;
}

export interface BlockDisk {
  /** Resolved real path under /dev, a block device. */
  hostPath: string;
  containerPath: string;
  readOnly: boolean;
  /** Derived from containerPath, at most SERIAL_MAX chars of [A-Za-z0-9_-]. */
  serial: string;
}

export interface BlockDevicePlan {
  dataDisks: BlockDisk[];
  /** container_path '/': the VM's persistent root disk. */
  root?: BlockDisk;
}

export type DeviceKind = 'block' | 'char' | 'file' | 'dir' | 'symlink' | 'other';

/** The host lookups planning needs (fs in production: hostDeviceInspector; a fake in tests). */
export interface DeviceInspector {
  /** What `path` itself is (no symlink followed); undefined when it does not exist. */
  lstat(path: string): Promise<DeviceKind | undefined>;
  /** The path with every symlink resolved (fs.realpath); throws when a component is missing. */
  realpath(path: string): Promise<string>;
}

/** virtio-blk's serial holds 20 bytes (VIRTIO_BLK_ID_BYTES); QEMU truncates longer ones. */
export const SERIAL_MAX = 20;
/** Disks one VM takes from devices: each is a virtio-blk PCI device on its own root port. */
export const MAX_BLOCK_DEVICES = 8;
export const ROOT_CONTAINER_PATH = '/';
export const ROOT_SERIAL = 'vmlet-root';

const CONTROL = /[\u0000-\u001f\u007f]/;
const SERIAL_SAFE = /^[A-Za-z0-9_-]+$/;

/**
 * The plan for `devices` (already shaped by the CRI layer). Throws InvalidArgumentError naming the
 * first device that cannot be a VM disk. Nothing on the host is changed.
 */
export async function planBlockDevices(devices: readonly CriDevice[], inspect: DeviceInspector): Promise<BlockDevicePlan> {
  if (devices.length > MAX_BLOCK_DEVICES) throw new InvalidArgumentError(`config.devices has ${devices.length} entries; a VM takes at most ${MAX_BLOCK_DEVICES} block devices`);
  const plan: BlockDevicePlan = { dataDisks: [] };
  const containerPaths = new Set<string>();
  const hostPaths = new Map<string, string>();
  for (const [i, d] of devices.entries()) {
    const name = `config.devices[${i}] (${JSON.stringify(d.host_path)} at ${JSON.stringify(d.container_path)})`;
    const containerPath = checkContainerPath(d.container_path, name);
    if (containerPaths.has(containerPath)) throw new InvalidArgumentError(`${name}: container_path is given twice`);
    containerPaths.add(containerPath);
    const readOnly = readOnlyFrom(d.permissions, name);
    const hostPath = await resolveBlockDevice(d.host_path, name, inspect);
    const other = hostPaths.get(hostPath);
    if (other !== undefined) throw new InvalidArgumentError(`${name}: ${hostPath} is already attached as ${other}`);
    hostPaths.set(hostPath, containerPath);
    if (containerPath === ROOT_CONTAINER_PATH) plan.root = { hostPath, containerPath, readOnly, serial: ROOT_SERIAL };
    else plan.dataDisks.push({ hostPath, containerPath, readOnly, serial: '' });
  }
  assignSerials(plan.dataDisks);
  return plan;
}

function checkContainerPath(value: string, name: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 4096 || CONTROL.test(value)) {
    throw new InvalidArgumentError(`${name}: container_path must be an absolute path without control characters`);
  }
  if (!value.startsWith('/') || posix.normalize(value) !== value || value.split('/').includes('..') || (value !== '/' && value.endsWith('/'))) {
    throw new InvalidArgumentError(`${name}: container_path must be an absolute normalized path`);
  }
  return value;
}

/** Some of r, w, m, each at most once; '' is the CRI's unset (rwm, as runc reads it). */
function readOnlyFrom(permissions: string, name: string): boolean {
  const p = permissions ?? '';
  if (p === '') return false;
  if (!/^[rwm]{1,3}$/.test(p) || new Set(p).size !== p.length) throw new InvalidArgumentError(`${name}: permissions ${JSON.stringify(p)} must be some of r, w, m`);
  if (!p.includes('r')) throw new InvalidArgumentError(`${name}: permissions ${JSON.stringify(p)} lack r; a VM disk cannot be write-only`);
  return !p.includes('w');
}

async function resolveBlockDevice(hostPath: string, name: string, inspect: DeviceInspector): Promise<string> {
  if (typeof hostPath !== 'string' || hostPath.length === 0 || hostPath.length > 4096 || CONTROL.test(hostPath)) {
    throw new InvalidArgumentError(`${name}: host_path must be an absolute path without control characters`);
  }
  if (!hostPath.startsWith('/') || posix.normalize(hostPath) !== hostPath || hostPath.split('/').includes('..')) {
    throw new InvalidArgumentError(`${name}: host_path is not an absolute normalized path (no "..")`);
  }
  if ((await inspect.lstat(hostPath)) === undefined) throw new InvalidArgumentError(`${name}: host_path does not exist`);
  let real: string;
  try {
    real = await inspect.realpath(hostPath);
  } catch (err) {
    throw new InvalidArgumentError(`${name}: host_path cannot be resolved (${(err as NodeJS.ErrnoException).code ?? String(err)}); a dangling symlink?`);
  }
  const kind = await inspect.lstat(real);
  if (kind !== 'block') throw new InvalidArgumentError(`${name}: ${real} is ${describe(kind)}, not a block device; only block devices become VM disks`);
  if (!real.startsWith('/dev/')) throw new InvalidArgumentError(`${name}: host_path resolves to ${real}, outside /dev; a block device must be a node under /dev`);
  return real;
}

function describe(kind: DeviceKind | undefined): string {
  switch (kind) {
    case 'char':
      return 'a character device';
    case 'file':
      return 'a regular file';
    case 'dir':
      return 'a directory';
    case undefined:
      return 'missing';
    default:
      return 'a socket, FIFO or other special file';
  }
}

/**
 * The serial of each disk: its container path's last component when that is short and plain
 * (`/dev/testpvc` → `testpvc`), otherwise (too long, other characters, or the same name twice in
 * one pod) up to 11 characters of it, a dash and 8 hex digits of the path's sha256.
 */
export function assignSerials(disks: BlockDisk[]): void {
  const counts = new Map<string, number>();
  for (const d of disks) counts.set(posix.basename(d.containerPath), (counts.get(posix.basename(d.containerPath)) ?? 0) + 1);
  for (const d of disks) {
    const base = posix.basename(d.containerPath);
    d.serial = base.length <= SERIAL_MAX && SERIAL_SAFE.test(base) && counts.get(base) === 1 && base !== ROOT_SERIAL ? base : hashedSerial(d.containerPath);
  }
}

export function hashedSerial(containerPath: string): string {
  const plain = posix.basename(containerPath).replace(/[^A-Za-z0-9_-]/g, '_').slice(0, SERIAL_MAX - 9);
  const hash = createHash('sha256').update(containerPath).digest('hex').slice(0, 8);
  return plain === '' ? hash : `${plain}-${hash}`;
}
