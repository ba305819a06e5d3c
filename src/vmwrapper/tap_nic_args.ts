/**
 * QEMU arguments that attach a guest NIC to an existing TAP inside the pod netns.
 *
 * Why not libvirt's <interface type='ethernet'><target dev=TAP managed='no'/>: libvirtd itself
 * opens that TAP (and first checks that the device exists) in *its own* network namespace, the
 * host's, before it runs the emulator. A TAP that lives only in the pod netns fails there with
 * "target managed='no' but specified dev doesn't exist" (libvirt 9.0, seen here). So the NIC goes
 * to QEMU through <qemu:commandline> (<qemu:arg value=…/> for each string returned here), and
 * QEMU, already inside the pod netns thanks to the vmwrapper, opens the TAP by name.
 *
 * libvirt does not know these devices, so their PCI slots must not be ones libvirt hands out:
 * on q35 libvirt places its devices behind pcie-root-ports it packs into the low slots of pcie.0
 * (2, 3, … eight ports per slot) and the chipset sits in slot 0x1f; slots 0x10-0x17 stay free for
 * any domain vmlet builds. (Without an explicit address a -device collided with libvirt's own
 * devices.) Each NIC is an integrated endpoint on the root bus, one slot per NIC.
 */
import { InvalidArgumentError } from '../errors.js';

export interface TapNic {
  /** TAP device inside the pod netns. */
  tap: string;
  /** Guest MAC, lower-case colon form. */
  mac: string;
  /** MTU the guest driver is told (virtio-net host_mtu). */
  mtu: number;
}

export interface TapNicArgsOptions {
  /** Root bus id: `pcie.0` for q35 (vmlet's machine type), `pci.0` for i440fx. */
  rootBus?: 'pcie.0' | 'pci.0';
  /**
   * Use vhost-net. Off by default: it needs /dev/vhost-net (absent on this project's hosts, and
   * not in the device ACL) and only pays off with KVM.
   */
  vhost?: boolean;
}

/** First PCI slot for vmlet NICs and how many follow it (0x10-0x17). */
export const NIC_FIRST_SLOT = 0x10;
export const MAX_TAP_NICS = 8;

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** `-netdev`/`-device` pairs for `nics` in order (guest sees them in that PCI order). Pure. */
export function tapNicQemuArgs(nics: readonly TapNic[], options: TapNicArgsOptions = {}): string[] {
  const bus = options.rootBus ?? 'pcie.0';
  if (bus !== 'pcie.0' && bus !== 'pci.0') throw new InvalidArgumentError(`root bus ${JSON.stringify(bus)} is not pcie.0 or pci.0`);
  validateTapNics(nics);
  const args: string[] = [];
  nics.forEach((nic, i) => {
    const netdev = `vmletnet${i}`;
    args.push(
      '-netdev',
      `tap,id=${netdev},ifname=${nic.tap},script=no,downscript=no,vhost=${options.vhost === true ? 'on' : 'off'}`,
      '-device',
      // romfile= (empty): no PXE option ROM, vmlet never network-boots and it slows the BIOS.
      `virtio-net-pci,id=vmletnic${i},netdev=${netdev},mac=${nic.mac},host_mtu=${nic.mtu},` +
        `bus=${bus},addr=0x${(NIC_FIRST_SLOT + i).toString(16)},romfile=`,
    );
  });
  return args;
}

/** Throws InvalidArgumentError naming the first NIC that is unusable (also for QMP hotplug). */
export function validateTapNics(nics: readonly TapNic[]): void {
  if (nics.length > MAX_TAP_NICS) {
    throw new InvalidArgumentError(`at most ${MAX_TAP_NICS} TAP NICs per VM, got ${nics.length}`);
  }
  const taps = new Set<string>();
  const macs = new Set<string>();
  nics.forEach((nic, i) => {
    // Values go into QEMU's comma-separated option syntax: only characters without meaning there.
    if (!IFNAME.test(nic.tap) || nic.tap === '.' || nic.tap === '..') {
      throw new InvalidArgumentError(`NIC ${i}: TAP name ${JSON.stringify(nic.tap)} is not a usable interface name`);
    }
    if (!MAC.test(nic.mac) || (parseInt(nic.mac.slice(0, 2), 16) & 1) !== 0) {
      throw new InvalidArgumentError(`NIC ${i}: MAC ${JSON.stringify(nic.mac)} is not a lower-case unicast MAC`);
    }
    if (!Number.isInteger(nic.mtu) || nic.mtu < 68 || nic.mtu > 65535) {
      throw new InvalidArgumentError(`NIC ${i}: MTU ${nic.mtu} is outside 68..65535`);
    }
    if (taps.has(nic.tap)) throw new InvalidArgumentError(`NIC ${i}: TAP ${nic.tap} used twice`);
    if (macs.has(nic.mac)) throw new InvalidArgumentError(`NIC ${i}: MAC ${nic.mac} used twice`);
    taps.add(nic.tap);
    macs.add(nic.mac);
  });
}
