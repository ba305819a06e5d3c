/**
 * Pure: the cloud-init bootcmd that makes each data disk appear in the guest at its pod's
 * container_path (kubelet's devicePath, e.g. /dev/testpvc), as Virtlet did, so user-data such as
 * `mounts: [["/dev/testpvc", "/mnt"]]` works unchanged. The link points at the kernel's name of the
 * disk whose virtio serial is the one vmlet gave it, found in sysfs (/sys/block/vd*\/serial), not
 * through udev's /dev/disk/by-id, so a guest without udev gets it as well. bootcmd runs at every
 * boot, before user-data's mounts; /dev is a devtmpfs, so the link lives as long as the boot.
 */
import type { BlockDisk } from './plan.js';

/** How long the guest waits for a disk to show up in sysfs (virtio probing is asynchronous). */
const WAIT_TENTHS = 100;

const LINK_SCRIPT = [
  'serial=$1; link=$2; i=0',
  `while [ "$i" -lt ${WAIT_TENTHS} ]; do`,
  '  for d in /sys/block/vd*; do',
  '    [ "$(cat "$d/serial" 2>/dev/null)" = "$serial" ] || continue',
  '    dev=/dev/${d##*/}',
  '    [ "$link" = "$dev" ] && exit 0',
  // Never replace a real node (container_path /dev/vdc naming another disk's node).
  '    if [ -e "$link" ] && [ ! -L "$link" ]; then echo "vmlet: $link exists and is not a link; left alone" >&2; exit 1; fi',
  '    mkdir -p "${link%/*}"; ln -sfn "$dev" "$link"; exit 0',
  '  done',
  '  i=$((i + 1)); sleep 0.1',
  'done',
  'echo "vmlet: no virtio disk with serial $serial for $link" >&2; exit 1',
].join('\n');

export function blockLinkBootcmd(disks: readonly BlockDisk[]): string[][] {
  return disks.map((d) => ['sh', '-c', LINK_SCRIPT, 'vmlet-block-device', d.serial, d.containerPath]);
}
