/**
 * Where a container's VM keeps its files. Under the state dir: `vms/<container id>/` holds the
 * overlay, the seed ISO, QEMU's raw console and the console pump's position; `qmp/` holds the warm
 * VMs' own QMP sockets. Domains vmlet makes carry DOMAIN_PREFIX.
 */
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';

/** Domains vmlet owns carry this prefix, so leftovers are recognisable. */
export const DOMAIN_PREFIX = 'vmlet-';
/** Under the state dir: one directory per container VM. */
export const VM_DIR = 'vms';
/** Under the state dir: one export directory per VM, the sources of its virtiofs shares (volumes/exports.ts). */
export const VOLUMES_DIR = 'volumes';
/** Under the state dir: block devices given to QEMU, with their original owners (block_devices/grants.ts). */
export const BLOCK_GRANTS_DIR = 'block-grants';
/** Under the state dir: warm VMs' QMP sockets (warmQmpPath). */
export const QMP_DIR = 'qmp';
/** In a VM's directory: the root disk overlay, the cloud-init seed, QEMU's console output and the pump's position. */
export const OVERLAY = 'root.qcow2';
export const SEED = 'seed.iso';
export const CONSOLE_RAW = 'console.raw';
export const CONSOLE_STATE = 'console.state';

/** A cold VM's domain name: both ids, shortened. */
export function coldDomainName(sandboxId: string, containerId: string): string {
  return `${DOMAIN_PREFIX}${sandboxId.slice(0, 12)}-${containerId.slice(0, 12)}`;
}

/**
 * Where a warm VM's QMP socket lives: <qmpDir>/<first 16 hex of its id>. Not in the VM's own
 * directory: a unix socket path has at most 107 bytes, and <dataDir>/<64 hex>/… overflows that
 * under a long state dir. QEMU removes the socket when it exits; vmlet removes any it leaves.
 */
export function warmQmpPath(qmpDir: string, id: string): string {
  return join(qmpDir, id.slice(0, 16));
}
