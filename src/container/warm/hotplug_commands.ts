/**
 * The QMP commands that turn a warm domain (paused, no disks, empty CD-ROM tray; see WarmLayout)
 * into one container's VM: the root disk and each TAP NIC on a free root port, the seed in the
 * tray of the SCSI CD-ROM on the virtio-scsi controller (LUN 1; see domain_xml.ts). Pure: the commands are data, sent one by one on the warm domain's own QMP socket.
 *
 * Why QMP and not libvirt's attach-device: libvirt opens `type='ethernet'` TAPs in its own network
 * namespace, where the pod's TAPs are not (see tap_nic_args.ts); QEMU, inside the pod netns, opens
 * them by name. Disks go the same way because libvirt's disk hotplug and media change measured
 * 30-33 ms each here, the same QMP commands through libvirt 6-17 ms, and on QEMU's socket
 * directly 2-5 ms. libvirt does not track these devices;
 * vmlet does not need it to (disk usage is read from the overlay file, NICs were never libvirt's).
 * The guest has not run a single instruction yet, so to its firmware they are cold-plugged.
 */
import { isAbsolute, normalize } from 'node:path';
import { InvalidArgumentError } from '../../errors.js';
import { validateTapNics, type TapNic } from '../../vmwrapper/tap_nic_args.js';
import { WARM_PORT_ALIAS, WARM_SEED_ALIAS, type DataDisk, type DiskDriver } from '../../libvirt/domain_spec.js';
import { DATA_DISK_SERIAL, MAX_DATA_DISKS } from '../../libvirt/domain_xml.js';
import { UNIX_PATH_MAX } from '../../qmp/socket.js';

export interface QmpCommand {
  execute: string;
  arguments: Record<string, unknown>;
}

const ROOT_NODE = 'vmlet-root';
// Control characters, and anything that is not a plain absolute path.
const UNSAFE = /[\u0000-\u001f\u007f]/;

function checkPath(what: string, path: string): void {
  if (typeof path !== 'string' || path.length === 0 || path.length > 4096 || UNSAFE.test(path) || !isAbsolute(path) || normalize(path) !== path) {
    throw new InvalidArgumentError(`${what} ${JSON.stringify(path)} is not an absolute normalized path`);
  }
}

/**
 * QEMU arguments for a warm domain's own QMP monitor at `path` (libvirt keeps the first one);
 * vmlet plugs the container's devices in through it (src/qmp/socket.ts).
 */
export function warmQmpArgs(path: string): string[] {
  checkPath('QMP socket path', path);
  // A comma would end the path in QEMU's option syntax; the kernel takes 107 bytes at most.
  if (path.includes(',') || Buffer.byteLength(path) > UNIX_PATH_MAX) {
    throw new InvalidArgumentError(`QMP socket path ${JSON.stringify(path)} has a comma or is longer than ${UNIX_PATH_MAX} bytes`);
  }
  return ['-qmp', `unix:${path},server=on,wait=off`];
}

/** Root ports a warm domain needs for `nics` NICs: one for a virtio root disk plus one per NIC. */
export function warmPortsFor(nics: number): number {
  return 1 + nics;
}

/**
 * The root disk, a qcow2 overlay: virtio-blk on the first free root port, or a SCSI disk on the
 * warm domain's virtio-scsi controller (libvirt's alias scsi0), as the cold domain would have it.
 */
export function warmRootDiskCommands(overlayPath: string, driver: DiskDriver): QmpCommand[] {
  checkPath('overlay path', overlayPath);
  if (driver !== 'virtio' && driver !== 'scsi') throw new InvalidArgumentError(`disk driver ${JSON.stringify(driver)} is not virtio or scsi`);
  const device =
    driver === 'virtio'
      ? { driver: 'virtio-blk-pci', id: 'vmletroot', drive: ROOT_NODE, bus: `${WARM_PORT_ALIAS}0` }
      : { driver: 'scsi-hd', id: 'vmletroot', drive: ROOT_NODE, bus: 'scsi0.0', channel: 0, 'scsi-id': 0, lun: 0 };
  return [
    // The overlay names its backing file (the image blob); QEMU opens that read-only itself.
    { execute: 'blockdev-add', arguments: { driver: 'qcow2', 'node-name': ROOT_NODE, file: { driver: 'file', filename: overlayPath } } },
    { execute: 'device_add', arguments: device },
  ];
}

/**
 * The seed ISO, into the empty tray of the warm domain's scsi-cd (QEMU id = its libvirt alias);
 * the guest sees the medium change as any SCSI CD-ROM's.
 */
export function warmSeedCommand(seedPath: string): QmpCommand {
  checkPath('seed path', seedPath);
  return { execute: 'blockdev-change-medium', arguments: { id: WARM_SEED_ALIAS, filename: seedPath, format: 'raw', 'read-only-mode': 'read-only' } };
}

/** NIC i on root port i + 1, in the sandbox's interface order; `ports` is how many the domain has. */
export function warmNicCommands(nics: readonly TapNic[], ports: number): QmpCommand[] {
  validateTapNics(nics);
  if (warmPortsFor(nics.length) > ports) {
    throw new InvalidArgumentError(`${nics.length} NICs and a root disk need ${warmPortsFor(nics.length)} free root ports; the warm domain has ${ports}`);
  }
  return nics.flatMap((nic, i): QmpCommand[] => {
    const netdev = `vmletnet${i}`;
    return [
      { execute: 'netdev_add', arguments: { type: 'tap', id: netdev, ifname: nic.tap, script: 'no', downscript: 'no', vhost: false } },
      {
        execute: 'device_add',
        // romfile '': no PXE option ROM (vmlet never network-boots; it slows the BIOS).
        arguments: { driver: 'virtio-net-pci', id: `vmletnic${i}`, netdev, mac: nic.mac, host_mtu: nic.mtu, bus: `${WARM_PORT_ALIAS}${i + 1}`, romfile: '' },
      },
    ];
  });
}

/**
 * `add-fd`, sent with the fd of an opened data disk device (QmpSession.executeWithFd): QEMU keeps
 * its copy in a new fd set and answers `{"fdset-id": N, "fd": …}`; `/dev/fdset/N` then names it.
 */
export function addFdCommand(index: number): QmpCommand {
  checkDiskIndex(index);
  return { execute: 'add-fd', arguments: { opaque: `vmlet-data${index}` } };
}

/**
 * Drops QEMU's own copy in fd set N once the disk's node holds a duplicate (or failed to): the set
 * and its fd then go when the node goes, and a failed plug leaves no fd behind in QEMU.
 */
export function removeFdCommand(fdset: number): QmpCommand {
  if (!Number.isInteger(fdset) || fdset < 0) throw new InvalidArgumentError(`fd set id ${fdset} is not a non-negative integer`);
  return { execute: 'remove-fd', arguments: { 'fdset-id': fdset } };
}

/**
 * Data disk `index` (a CRI block device or an image volume) as a virtio-blk disk on root port
 * `port`, with its serial (the guest's /dev/disk/by-id/virtio-<serial>), as the cold domain's XML
 * has it (domain_xml.ts addDataDisk). A block device is read through `fdset` (addFdCommand: QEMU
 * cannot open the node by path, see adopt.ts), raw, without the host page cache and with Linux
 * native AIO (libvirt's cache='none' io='native'); read-only when the disk is, which QEMU also
 * checks against the fd's access mode. An image volume is the store's blob, which QEMU opens
 * read-only by path as it does the root overlay's backing file.
 */
export function warmDataDiskCommands(disk: DataDisk, index: number, port: number, fdset: number | undefined): QmpCommand[] {
  checkDiskIndex(index);
  checkPath('data disk path', disk.path);
  if (!DATA_DISK_SERIAL.test(disk.serial)) throw new InvalidArgumentError(`data disk serial ${JSON.stringify(disk.serial)} is not 1-20 of [A-Za-z0-9_-]`);
  if (!Number.isInteger(port) || port < 0) throw new InvalidArgumentError(`root port ${port} is not a non-negative integer`);
  const node = `vmletdata${index}`;
  let blockdev: Record<string, unknown>;
  if (disk.imageFormat !== undefined) {
    if (disk.imageFormat !== 'qcow2' && disk.imageFormat !== 'raw') throw new InvalidArgumentError(`image volume format ${JSON.stringify(disk.imageFormat)} is not qcow2 or raw`);
    if (disk.readOnly !== true) throw new InvalidArgumentError('an image volume is read-only');
    blockdev = { driver: disk.imageFormat, 'node-name': node, 'read-only': true, file: { driver: 'file', filename: disk.path, 'read-only': true } };
  } else {
    if (fdset === undefined || !Number.isInteger(fdset) || fdset < 0) throw new InvalidArgumentError(`block device ${disk.path} needs the fd set it was passed in`);
    if (!disk.path.startsWith('/dev/')) throw new InvalidArgumentError(`block device ${JSON.stringify(disk.path)} is not under /dev`);
    const readOnly = disk.readOnly === true;
    const cache = { direct: true, 'no-flush': false };
    blockdev = {
      driver: 'raw',
      'node-name': node,
      'read-only': readOnly,
      cache,
      file: { driver: 'host_device', filename: `/dev/fdset/${fdset}`, aio: 'native', 'read-only': readOnly, cache },
    };
  }
  return [
    { execute: 'blockdev-add', arguments: blockdev },
    { execute: 'device_add', arguments: { driver: 'virtio-blk-pci', id: node, drive: node, serial: disk.serial, bus: `${WARM_PORT_ALIAS}${port}` } },
  ];
}

function checkDiskIndex(index: number): void {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_DATA_DISKS) throw new InvalidArgumentError(`data disk index ${index} is not in 0..${MAX_DATA_DISKS - 1}`);
}
