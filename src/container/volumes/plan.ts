/**
 * Pure: how a container's mounts reach its VM. Every VM (warm or cold) has the same two virtiofs
 * shares, each one per-VM directory on the host (see exports.ts):
 * - `vmlet-ro`: the readonly mounts (ConfigMaps, Secrets, projected tokens). Its source is a
 *   read-only bind mount and each entry in it a read-only bind mount (virtiofs has no read-only
 *   export of its own in libvirt 9.0 / QEMU 7.2's virtiofsd), so writes fail on the host (EROFS)
 *   whatever the guest does.
 * - `vmlet-rw`: the writable ones (emptyDirs, hostPaths, /etc/hosts, the termination log).
 * virtiofsd runs as root with its capabilities, so files keep their host owners and modes, guest
 * users create files as themselves, and host symlinks (the `..data` layout) are served as symlinks.
 * Mount i becomes entry `<i>` in its share's directory (a bind mount of the host path, file or
 * directory), and the guest mounts both shares at boot (cloud-init bootcmd, before user-data runs)
 * and bind-mounts `<share>/<i>` at the container path.
 */
import { dirname } from 'node:path';
import { InvalidArgumentError } from '../../errors.js';
import type { Share } from '../../libvirt/domain_spec.js';
import type { HostPathKind } from './host_path.js';

export type ShareName = 'ro' | 'rw';

export const SHARE_TAG: Record<ShareName, string> = { ro: 'vmlet-ro', rw: 'vmlet-rw' };
/** Where the guest mounts the two shares. */
export const GUEST_SHARES_DIR = '/run/vmlet/volumes';

export interface CheckedMount {
  /** CRI label, e.g. "config.mounts[2] (/etc/config)". */
  name: string;
  containerPath: string;
  /** Real path on the host (resolveHostPath). */
  hostPath: string;
  kind: HostPathKind;
  readonly: boolean;
}

/** One bind mount into a VM's export directory. */
export interface ExportEntry {
  name: string;
  share: ShareName;
  /** File or directory name inside the share's directory. */
  entry: string;
  source: string;
  kind: HostPathKind;
  readonly: boolean;
}

export interface VolumePlan {
  entries: ExportEntry[];
  /** cloud-init bootcmd entries (argument lists, no shell quoting involved). */
  bootcmd: string[][];
}

/** The two shares of a VM whose export directory is `exportDir` (exports.ts makes it). */
export function vmShares(exportDir: string): Share[] {
  return [
    { tag: SHARE_TAG.ro, source: `${exportDir}/ro` },
    { tag: SHARE_TAG.rw, source: `${exportDir}/rw` },
  ];
}

export function planVolumes(mounts: readonly CheckedMount[]): VolumePlan {
  if (mounts.length === 0) return { entries: [], bootcmd: [] };
  // Parents first, so a mount inside another one's path lands on top of it in the guest.
  const ordered = mounts.map((m, i) => ({ m, i })).sort((a, b) => depth(a.m.containerPath) - depth(b.m.containerPath) || a.i - b.i);
  for (const { m } of ordered) {
    const under = mounts.find((f) => f.kind === 'file' && f !== m && m.containerPath.startsWith(`${f.containerPath}/`));
    if (under) throw new InvalidArgumentError(`${m.name}: container_path lies under ${under.name}, which is a file`);
  }
  const entries: ExportEntry[] = [];
  const bootcmd: string[][] = [
    // Debian's cloud kernel has virtiofs as a module (CONFIG_VIRTIO_FS=m); mount would load it
    // too, loading it first makes a missing module the error instead of "unknown filesystem".
    ['modprobe', 'virtiofs'],
    ['mkdir', '-p', `${GUEST_SHARES_DIR}/ro`, `${GUEST_SHARES_DIR}/rw`],
    ['mount', '-t', 'virtiofs', '-o', 'ro', SHARE_TAG.ro, `${GUEST_SHARES_DIR}/ro`],
    ['mount', '-t', 'virtiofs', SHARE_TAG.rw, `${GUEST_SHARES_DIR}/rw`],
  ];
  for (const { m, i } of ordered) {
    const share: ShareName = m.readonly ? 'ro' : 'rw';
    const entry = String(i);
    entries.push({ name: m.name, share, entry, source: m.hostPath, kind: m.kind, readonly: m.readonly });
    const source = `${GUEST_SHARES_DIR}/${share}/${entry}`;
    if (m.kind === 'dir') {
      bootcmd.push(['mkdir', '-p', m.containerPath]);
    } else {
      // A file needs a file to be mounted on; an existing one (/etc/hosts) is kept as is.
      bootcmd.push(['mkdir', '-p', dirname(m.containerPath)]);
      bootcmd.push(['sh', '-c', '[ -e "$1" ] || : > "$1"', 'vmlet-volume', m.containerPath]);
    }
    bootcmd.push(['mount', '--bind', source, m.containerPath]);
    if (m.readonly) bootcmd.push(['mount', '-o', 'remount,bind,ro', m.containerPath]);
  }
  return { entries, bootcmd };
}

function depth(path: string): number {
  return path.split('/').length;
}
