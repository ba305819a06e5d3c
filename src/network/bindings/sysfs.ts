/**
 * What sysfs says about an SR-IOV VF, and the writes that move it between drivers. The root is
 * configurable (`--sysfs-root`, default /sys) so that tests run the whole path against a fake tree.
 *
 * Every path is built from a PCI address checked against PCI_ADDRESS or a driver name checked
 * against DRIVER_NAME, never from a raw value, so nothing read from a link can point elsewhere.
 */
import { access, appendFile, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { FailedPreconditionError, InternalError } from '../../errors.js';
import { assertInterfaceName } from '../names.js';

export const PCI_ADDRESS = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;
const DRIVER_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
export const VFIO_PCI = 'vfio-pci';

/** The file operations the VF code needs, relative to a sysfs root. Tests wrap it to record or to act as the kernel. */
export interface Sysfs {
  readonly root: string;
  /** Target basename of a symlink, or undefined when the link is not there. */
  linkTarget(path: string): Promise<string | undefined>;
  /** Entries of a directory, or undefined when it is not there. */
  list(path: string): Promise<string[] | undefined>;
  exists(path: string): Promise<boolean>;
  /** Contents of an attribute without the trailing newline, or undefined when it is not there. */
  read(path: string): Promise<string | undefined>;
  /**
   * Writes `value` to an attribute. `action` files (bind, unbind) are opened for append: the kernel
   * ignores the offset, and a fake tree keeps every write as a record.
   */
  write(path: string, value: string, mode: 'attribute' | 'action'): Promise<void>;
}

function missing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** The real one: plain file operations under `root`. */
export class NodeSysfs implements Sysfs {
  constructor(readonly root: string) {}

  private path(rel: string): string {
    return join(this.root, rel);
  }

  async linkTarget(rel: string): Promise<string | undefined> {
    try {
      return basename(await readlink(this.path(rel)));
    } catch (err) {
      if (missing(err) || (err as NodeJS.ErrnoException).code === 'EINVAL') return undefined;
      throw err;
    }
  }

  async list(rel: string): Promise<string[] | undefined> {
    try {
      return (await readdir(this.path(rel))).sort();
    } catch (err) {
      if (missing(err)) return undefined;
      throw err;
    }
  }

  async exists(rel: string): Promise<boolean> {
    try {
      await access(this.path(rel));
      return true;
    } catch {
      return false;
    }
  }

  async read(rel: string): Promise<string | undefined> {
    try {
      return (await readFile(this.path(rel), 'utf8')).replace(/\n$/, '');
    } catch (err) {
      if (missing(err)) return undefined;
      throw err;
    }
  }

  async write(rel: string, value: string, mode: 'attribute' | 'action'): Promise<void> {
    if (mode === 'action') await appendFile(this.path(rel), `${value}\n`);
    else await writeFile(this.path(rel), `${value}\n`);
  }
}

export function devicePath(pciAddress: string, ...rest: string[]): string {
  assertPciAddress(pciAddress);
  return join('bus', 'pci', 'devices', pciAddress, ...rest);
}

export function driverPath(driver: string, ...rest: string[]): string {
  if (!DRIVER_NAME.test(driver) || driver === '.' || driver === '..') throw new InternalError(`bad driver name ${JSON.stringify(driver)}`);
  return join('bus', 'pci', 'drivers', driver, ...rest);
}

export function assertPciAddress(address: string): void {
  if (typeof address !== 'string' || !PCI_ADDRESS.test(address)) throw new InternalError(`${JSON.stringify(address)} is not a PCI address`);
}

/**
 * The PCI address of interface `ifname`: from the parent device rtnetlink reports (works across
 * namespaces), else from `<sysfs>/class/net/IF/device`, which only shows interfaces of the
 * namespace that mounted sysfs (a fake tree, or a kernel without parentdev). The class/net entry
 * counts only when its ifindex is the link's, so a host interface of the same name is never taken.
 */
export async function pciAddressOf(
  sysfs: Sysfs,
  link: { name: string; ifindex?: number; parentBus?: string; parentDev?: string },
): Promise<string | undefined> {
  if (link.parentBus !== undefined) {
    if (link.parentBus !== 'pci' || link.parentDev === undefined) return undefined;
    const address = link.parentDev.toLowerCase();
    if (!PCI_ADDRESS.test(address)) throw new InternalError(`${link.name} reports parent PCI device ${JSON.stringify(link.parentDev)}`);
    return address;
  }
  assertInterfaceName(link.name);
  const target = await sysfs.linkTarget(join('class', 'net', link.name, 'device'));
  if (target === undefined || !PCI_ADDRESS.test(target)) return undefined;
  const ifindex = await sysfs.read(join('class', 'net', link.name, 'ifindex'));
  if (link.ifindex === undefined || ifindex !== String(link.ifindex)) return undefined;
  return target;
}

/** Whether the PCI function at `address` is an SR-IOV VF (it has a `physfn` link). */
export function isVirtualFunction(sysfs: Sysfs, address: string): Promise<boolean> {
  return sysfs.exists(devicePath(address, 'physfn'));
}

/** Everything the binding needs to know about a VF before it touches it. */
export interface VfFacts {
  pciAddress: string;
  pfAddress: string;
  /** The PF's network interface in the host namespace: `ip link set PF vf N …` goes through it. */
  pf: string;
  /** N of the PF's `virtfnN` link that points at the VF. */
  index: number;
  /** The driver the VF is bound to now; undefined when none. */
  driver?: string;
  /** driver_override as found; undefined when none ("(null)"). */
  driverOverride?: string;
  iommuGroup: string;
}

function refuse(vf: string, ifname: string, reason: string): never {
  throw new FailedPreconditionError(`SR-IOV VF ${vf} (${ifname}): ${reason}`);
}

/**
 * Reads and checks a VF: its PF (known, listing the VF, with a netdev in the host namespace),
 * its index, its driver, an IOMMU group of its own, and the vfio-pci driver being there.
 * FailedPreconditionError naming the VF and the reason otherwise.
 */
export async function readVfFacts(sysfs: Sysfs, pciAddress: string, ifname: string): Promise<VfFacts> {
  const pfAddress = await sysfs.linkTarget(devicePath(pciAddress, 'physfn'));
  if (pfAddress === undefined) refuse(pciAddress, ifname, 'it is not a virtual function (no physfn link)');
  if (!PCI_ADDRESS.test(pfAddress) || !(await sysfs.exists(devicePath(pfAddress)))) {
    refuse(pciAddress, ifname, `its PF ${JSON.stringify(pfAddress)} is unknown (not under ${join(sysfs.root, 'bus/pci/devices')})`);
  }
  let index: number | undefined;
  for (const entry of (await sysfs.list(devicePath(pfAddress))) ?? []) {
    const m = /^virtfn(\d{1,4})$/.exec(entry);
    if (m && (await sysfs.linkTarget(devicePath(pfAddress, entry))) === pciAddress) index = Number(m[1]);
  }
  if (index === undefined) refuse(pciAddress, ifname, `its PF ${pfAddress} is unknown: no virtfnN link of it names the VF`);
  const pfNetdevs = (await sysfs.list(devicePath(pfAddress, 'net'))) ?? [];
  if (pfNetdevs.length !== 1) {
    refuse(pciAddress, ifname, `its PF ${pfAddress} has ${pfNetdevs.length === 0 ? 'no network interface' : `several network interfaces (${pfNetdevs.join(', ')})`} in the host namespace`);
  }
  const pf = pfNetdevs[0]!;
  assertInterfaceName(pf);
  const driver = await sysfs.linkTarget(devicePath(pciAddress, 'driver'));
  if (driver !== undefined && !DRIVER_NAME.test(driver)) refuse(pciAddress, ifname, `driver ${JSON.stringify(driver)} has an unusable name`);
  if (driver === VFIO_PCI) refuse(pciAddress, ifname, 'it is bound to vfio-pci already (in use by another VM?)');
  const override = await sysfs.read(devicePath(pciAddress, 'driver_override'));
  const group = await sysfs.linkTarget(devicePath(pciAddress, 'iommu_group'));
  if (group === undefined || !/^\d{1,6}$/.test(group)) refuse(pciAddress, ifname, 'it has no IOMMU group (IOMMU off? boot with intel_iommu=on or amd_iommu=on)');
  const members = await sysfs.list(devicePath(pciAddress, 'iommu_group', 'devices'));
  if (members === undefined) refuse(pciAddress, ifname, `its IOMMU group ${group} lists no devices`);
  const others = members.filter((m) => m !== pciAddress);
  if (others.length > 0) refuse(pciAddress, ifname, `its IOMMU group ${group} is shared with other host devices (${others.join(', ')})`);
  if (!(await sysfs.exists(driverPath(VFIO_PCI)))) refuse(pciAddress, ifname, 'the vfio-pci driver is not loaded (modprobe vfio-pci)');
  const facts: VfFacts = { pciAddress, pfAddress, pf, index, iommuGroup: group };
  if (driver !== undefined) facts.driver = driver;
  if (override !== undefined && override !== '(null)' && override !== '') facts.driverOverride = override;
  return facts;
}
