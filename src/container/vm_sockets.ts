/**
 * Unix sockets QEMU listens on for one container's VM: the guest agent channel and the serial
 * console. They live beside the warm VMs' QMP sockets (<state-dir>/qmp/, see warmQmpPath) under
 * the first 16 hex of the container id, because a unix socket path has at most 107 bytes and the
 * VM's own directory can be longer than that under a long state dir.
 */
import { join } from 'node:path';

export function guestAgentSocketPath(qmpDir: string, containerId: string): string {
  return join(qmpDir, `${containerId.slice(0, 16)}.agent`);
}

export function consoleSocketPath(qmpDir: string, containerId: string): string {
  return join(qmpDir, `${containerId.slice(0, 16)}.console`);
}
