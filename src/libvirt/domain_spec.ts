/**
 * VmSpec: everything the libvirt domain of one vmlet container needs, already decided.
 * It is the single input of buildDomainXml (src/libvirt/domain_xml.ts), so the domain XML is a
 * pure function of it. Callers assemble it from the container config, the sandbox's VmNetwork,
 * the parsed Virtlet annotations and host facts (KVM usable or not, emulator path).
 */
import type { VmNetwork } from '../network/types.js';

/** `kvm` when a bounded probe showed KVM works; `qemu` (TCG) otherwise. */
export type DomainType = 'kvm' | 'qemu';

/** `virtio` = virtio-blk (vda); `scsi` = a disk on a virtio-scsi controller (sda). Virtlet's names. */
export type DiskDriver = 'virtio' | 'scsi';

/** Which cloud-init datasource the seed CD-ROM carries. */
export type SeedKind = 'nocloud' | 'configdrive';

/** Absent = the hypervisor's default model; `host-model` mirrors Virtlet's VirtletCPUModel. */
export type CpuMode = 'host-model' | 'host-passthrough';

export interface CpuTune {
  /** cgroup cpu shares (CRI cpu_shares); libvirt accepts 2..262144. */
  shares?: number;
  /** CFS period in µs (CRI cpu_period), 1000..1000000. */
  period?: number;
  /** CFS quota in µs per period (CRI cpu_quota); -1 = unlimited. */
  quota?: number;
}

export type RootDisk = OverlayRootDisk | BlockRootDisk;

export interface OverlayRootDisk {
  /** qcow2 overlay of the image, absolute path. */
  path: string;
  format: 'qcow2';
  driver: DiskDriver;
}

/**
 * A host block device the guest sees as a virtio disk (a pod's raw block volume, see
 * src/container/block_devices/plan.ts): raw, host page cache bypassed (cache='none', io='native'),
 * so what the guest flushed is on the device, whatever becomes of QEMU.
 */
export interface DataDisk {
  /** Block device node under /dev; with `imageFormat`, an image store blob (a regular file). */
  path: string;
  /** virtio serial: the guest's /dev/disk/by-id/virtio-<serial>. */
  serial: string;
  readOnly: boolean;
  /**
   * Set for an image volume (a containerDisk mounted as a disk): `path` is the store's blob in
   * this format, attached read-only as a file (it is shared and must never be written).
   */
  imageFormat?: 'qcow2' | 'raw';
}

/**
 * A persistent root disk (src/container/block_devices/): a host block device holding the image
 * raw after vmlet's header; the guest sees only `slice` of it (cache='none', io='native').
 */
export interface BlockRootDisk {
  /** The block device node, absolute path under /dev. */
  path: string;
  format: 'raw';
  driver: DiskDriver;
  /** Bytes of the device the guest sees as its disk. */
  slice: { offset: number; size: number };
}

export interface SeedDisk {
  /** ISO written by writeSeedIso, absolute path; attached read-only. */
  path: string;
  kind: SeedKind;
}

/**
 * A warm domain (src/container/warm/pool.ts) starts paused before any container exists: no root
 * disk, an empty CD-ROM tray for the seed, and PCIe root ports left free for the root disk and
 * the NICs that CreateContainer plugs in through QMP. Their ids are WARM_PORT_ALIAS + index.
 */
export interface WarmLayout {
  /** Free pcie-root-ports: one for the root disk, the rest for NICs. */
  hotplugPorts: number;
}

/** QEMU ids (libvirt user aliases) of a warm domain's free root ports and its seed CD-ROM. */
export const WARM_PORT_ALIAS = 'ua-vmletport';
export const WARM_SEED_ALIAS = 'ua-vmletseed';

/**
 * The guest's first serial port (its console).
 * - `file`: QEMU appends every byte to `path`; vmlet tails it into the CRI log (recommended, see
 *   domain_xml.ts for why).
 * - `pty`: an interactive pty (for attach); with `logPath` libvirt's virtlogd also records the output.
 */
export type SerialConsole =
  | { kind: 'file'; path: string }
  | { kind: 'pty'; logPath?: string }
  /**
   * `unix`: a socket QEMU listens on (CRI Attach writes to the console through it, see
   * src/console/attach_hub.ts) with QEMU logging every byte to `logPath` whether or not a client
   * is connected, so the file vmlet tails into the CRI log stays complete.
   */
  | { kind: 'unix'; socketPath: string; logPath: string };

/** One guest NIC, in the sandbox's CNI interface order. */
export type VmNic =
  | {
      kind: 'tap';
      /** Interface name inside the pod netns (eth0, net1, …), for messages only. */
      ifName: string;
      mac: string;
      mtu: number;
      /** Existing TAP device QEMU opens (libvirt does not create or delete it: managed='no'). */
      tap: string;
    }
  | {
      kind: 'sriov';
      ifName: string;
      /** Set on the VF by the SR-IOV CNI plugin (through the PF); the guest sees it as is. */
      mac: string;
      /** Host PCI address of the VF, e.g. "0000:03:10.2". */
      pciAddress: string;
    };

/**
 * A host directory the guest mounts over virtiofs (`mount -t virtiofs TAG DIR`). libvirt starts
 * one virtiofsd (root, outside the vmwrapper) per share; QEMU connects to its vhost-user socket.
 * There is no read-only flag: libvirt 9.0 refuses `<readonly/>` for virtiofs and the C virtiofsd
 * has no such option, so a read-only share is a source that is itself a read-only mount
 * (src/container/volumes/exports.ts).
 */
export interface Share {
  /** The virtiofs mount tag (at most 31 bytes here; the device allows 36). */
  tag: string;
  source: string;
}

/** vmlet's own ids, stored in the domain's <metadata> so recovery can map a domain back. */
export interface VmletDomainMetadata {
  sandboxId: string;
  containerId: string;
  /** Which vmlet (by state dir) made the domain: only that one may garbage-collect it. */
  owner?: string;
}

export interface EnvVar {
  name: string;
  value: string;
}

export interface VmSpec {
  /** libvirt domain name: vmlet prefix + short id. */
  name: string;
  /** Domain UUID (also the guest's SMBIOS system UUID; VirtletSystemUUID sets it). */
  uuid: string;
  domainType: DomainType;
  /** The emulator libvirt runs (vmlet's vmwrapper in production). */
  emulator: string;
  memoryBytes: number;
  vcpus: number;
  cputune?: CpuTune;
  cpuMode?: CpuMode;
  /** Absent only in a warm domain (`warm`), which gets its disks later. */
  rootDisk?: RootDisk;
  seed?: SeedDisk;
  /** Block devices after the root disk (vdb, vdc, …); a warm domain gets them hot-plugged instead. */
  dataDisks?: DataDisk[];
  warm?: WarmLayout;
  console: SerialConsole;
  /** The `org.qemu.guest_agent.0` virtio-serial channel's unix socket (QEMU listens, libvirtd is its one client and relays Exec's agent commands). */
  guestAgentSocket?: string;
  nics: VmNic[];
  /** Environment for the emulator process (<qemu:env>), e.g. what the vmwrapper needs. */
  emulatorEnv: EnvVar[];
  /**
   * Extra QEMU arguments (<qemu:arg>): the TAP NICs, which QEMU must open itself inside the pod
   * netns because libvirtd looks TAPs up in its own namespace (src/vmwrapper/tap_nic_args.ts).
   */
  emulatorArgs?: string[];
  /**
   * virtiofs shares (at most MAX_SHARES), cold and warm alike (vmlet does not hot-plug them). Any
   * share makes the guest memory a shared memfd, which vhost-user needs.
   */
  shares?: Share[];
  /** `none` (default) or `virtio` if guest memory statistics are wanted. */
  memballoon?: 'none' | 'virtio';
  /**
   * true: libvirt starts the emulator (the vmwrapper) as root and leaves every file's owner and
   * mode alone (`<seclabel type='static' model='dac' relabel='no'><label>+0:+0</label>`): vmlet
   * set them for the QEMU user the launcher drops to (src/vmwrapper/qemu_access.ts); libvirt's own
   * relabelling would give the disks back to root:root for the domain's lifetime.
   */
  filesLabelledByVmlet?: boolean;
  metadata: VmletDomainMetadata;
}

/** The guest NICs of a sandbox network, in CNI order: tap bindings and SR-IOV VFs. */
export function nicsFromNetwork(network: VmNetwork): VmNic[] {
  return network.interfaces.map((iface): VmNic => {
    const binding = iface.binding;
    switch (binding.kind) {
      case 'tap':
        return { kind: 'tap', ifName: iface.name, mac: iface.mac, mtu: iface.mtu, tap: binding.tap };
      case 'sriov':
        return { kind: 'sriov', ifName: iface.name, mac: iface.mac, pciAddress: binding.pciAddress };
    }
  });
}
