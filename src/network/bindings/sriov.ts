/**
 * The "sriov" binding (Virtlet's model for SR-IOV): a VF that a CNI plugin (the SR-IOV CNI plugin)
 * put into the pod netns is taken away from the host and given to the VM as a PCI device
 * (`<hostdev managed='no'>`). vmlet does the driver binding itself, so that it can undo it exactly:
 *
 *   wire:   PF: vf N mac <the netdev's MAC> vlan <as the plugin set it> spoofchk on trust off
 *           driver_override = vfio-pci; unbind from its driver; bind to vfio-pci
 *           (the netdev disappears from the pod netns with its driver)
 *   unwire: unbind from vfio-pci; driver_override as it was; PF settings as they were;
 *           bind to the original driver; the netdev that reappears in the host namespace goes back
 *           into the pod netns under its original name, with its MAC, MTU, addresses and routes
 *
 * MAC and VLAN are kept on the PF (host side): with spoof checking on and trust off, the guest
 * cannot send from another MAC or leave its VLAN. The VM gets its addresses from cloud-init
 * network-config (no DHCP for VFs). Every step of unwire looks at what is there now, so it
 * finishes a half-done wiring, one already undone, and one whose netns is gone.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { FailedPreconditionError, InternalError, NotFoundError, errorText } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { HOST_NETNS, type IpCommand, type IpRunner } from '../iproute.js';
import { assertInterfaceName, normalizeMac } from '../names.js';
import type { NetworkBinding } from './binding.js';
import {
  addressRestoreCommand,
  parseLinks,
  readInterfaceSnapshot,
  routeRestoreCommand,
  routeRestoreOrder,
  type InterfaceSnapshot,
  type LinkState,
} from './snapshot.js';
import { VFIO_PCI, devicePath, driverPath, pciAddressOf, readVfFacts, type Sysfs } from './sysfs.js';
import type { BindingContext, SriovWiredInterface, VfPfSettings } from './types.js';

export interface SriovBindingOptions {
  ip: IpRunner;
  sysfs: Sysfs;
  logger?: Logger;
  /** How long unwire waits for the VF's netdev to come back after its driver is bound again. */
  netdevWaitMs?: number;
  /** How long a bind or unbind may take to show in the VF's `driver` link. */
  driverWaitMs?: number;
}

const DEFAULT_NETDEV_WAIT_MS = 10_000;
const DEFAULT_DRIVER_WAIT_MS = 5_000;
const ZERO_MAC = '00:00:00:00:00:00';

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function vlanNumber(value: unknown, what: string): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 4095) {
    throw new InternalError(`ip printed an unexpected ${what}: ${JSON.stringify(value)}`);
  }
  return value;
}

/** VF `index`'s settings from an `ip -j -d link show dev PF` listing (its vfinfo_list). Pure. */
export function parseVfSettings(json: unknown, pf: string, index: number): VfPfSettings {
  const dev = Array.isArray(json) && json.length === 1 ? json[0] : undefined;
  if (!isRecord(dev)) throw new InternalError(`ip printed an unexpected listing of ${pf}`);
  const list = Array.isArray(dev.vfinfo_list) ? dev.vfinfo_list : [];
  const vf = list.find((v): v is Record<string, unknown> => isRecord(v) && v.vf === index);
  if (!vf) throw new FailedPreconditionError(`PF ${pf} reports no VF ${index} (SR-IOV off on it?)`);
  const rawMac = vf.address ?? vf.mac;
  const mac = typeof rawMac === 'string' ? normalizeMac(rawMac) : ZERO_MAC;
  // Newer kernels list VLANs (with protocol); older ones one vlan/qos pair.
  const first = Array.isArray(vf.vlan_list) && isRecord(vf.vlan_list[0]) ? vf.vlan_list[0] : vf;
  const settings: VfPfSettings = { mac, vlan: vlanNumber(first.vlan, 'VF VLAN'), qos: vlanNumber(first.qos, 'VF qos') };
  if (typeof vf.spoofchk === 'boolean') settings.spoofchk = vf.spoofchk;
  if (typeof vf.trust === 'boolean') settings.trust = vf.trust;
  return settings;
}

/** `link set dev PF vf N mac … vlan … qos … [spoofchk …] [trust …]`. Pure. */
export function pfCommand(pf: string, index: number, s: VfPfSettings): IpCommand {
  const cmd = ['link', 'set', 'dev', pf, 'vf', String(index), 'mac', s.mac, 'vlan', String(s.vlan)];
  if (s.vlan !== 0) cmd.push('qos', String(s.qos));
  if (s.spoofchk !== undefined) cmd.push('spoofchk', s.spoofchk ? 'on' : 'off');
  if (s.trust !== undefined) cmd.push('trust', s.trust ? 'on' : 'off');
  return cmd;
}

/** Decides the wiring from the netdev's snapshot, the VF's sysfs facts and its PF settings. Pure. */
export function planSriov(
  ctx: BindingContext,
  snapshot: InterfaceSnapshot,
  facts: { pciAddress: string; pfAddress: string; pf: string; index: number; driver?: string; driverOverride?: string; iommuGroup: string },
  pfBefore: VfPfSettings,
): SriovWiredInterface {
  const { link } = snapshot;
  const ifname = ctx.cniInterface.name;
  assertInterfaceName(ifname);
  if (link.name !== ifname) throw new InternalError(`snapshot is of ${link.name}, not ${ifname}`);
  const vfLabel = `SR-IOV VF ${facts.pciAddress} (${ifname})`;
  if (link.mac === undefined || link.mac === ZERO_MAC) throw new FailedPreconditionError(`${vfLabel} has no Ethernet address`);
  if (facts.driver === undefined) throw new FailedPreconditionError(`${vfLabel} has no driver to bind back to`);
  const vf: SriovWiredInterface['vf'] = {
    pciAddress: facts.pciAddress,
    pfAddress: facts.pfAddress,
    pf: facts.pf,
    index: facts.index,
    driver: facts.driver,
    iommuGroup: facts.iommuGroup,
  };
  if (facts.driverOverride !== undefined) vf.driverOverride = facts.driverOverride;
  const netdev: SriovWiredInterface['netdev'] = {
    name: ifname,
    mac: link.mac,
    mtu: link.mtu,
    wasUp: link.up,
    addresses: snapshot.addresses,
    routes: snapshot.routes,
  };
  if (link.addrGenMode !== undefined) netdev.addrGenMode = link.addrGenMode;
  return {
    kind: 'sriov',
    version: 1,
    vm: {
      name: ifname,
      mac: link.mac,
      mtu: link.mtu,
      ips: ctx.cniInterface.ips.map((ip) => ({ ...ip })),
      routes: ctx.cniInterface.routes.map((route) => ({ ...route })),
      binding: { kind: 'sriov', pciAddress: facts.pciAddress },
    },
    vf,
    netdev,
    pfBefore,
    // The MAC the guest sees is the one CNI gave the netdev; the VLAN stays what the plugin set.
    pfWired: { mac: link.mac, vlan: pfBefore.vlan, qos: pfBefore.qos, spoofchk: true, trust: false },
  };
}

/** The `ip -batch` (pod netns) that puts the netdev's recorded attributes back. Pure. */
export function netdevRestoreCommands(netdev: SriovWiredInterface['netdev']): IpCommand[] {
  const cmds: IpCommand[] = [['link', 'set', 'dev', netdev.name, 'address', netdev.mac, 'mtu', String(netdev.mtu)]];
  if (netdev.addrGenMode !== undefined) cmds.push(['link', 'set', 'dev', netdev.name, 'addrgenmode', netdev.addrGenMode]);
  // Routes need the link up (the kernel refuses a route over a down device), so up comes before them.
  cmds.push(['link', 'set', 'dev', netdev.name, 'up']);
  for (const addr of netdev.addresses) cmds.push(addressRestoreCommand(addr, netdev.name));
  for (const route of routeRestoreOrder(netdev.routes)) cmds.push(routeRestoreCommand(route, netdev.name));
  if (!netdev.wasUp) cmds.push(['link', 'set', 'dev', netdev.name, 'down']);
  return cmds;
}

export class SriovBinding implements NetworkBinding<SriovWiredInterface> {
  readonly kind = 'sriov' as const;
  private readonly logger: Logger;

  constructor(private readonly options: SriovBindingOptions) {
    this.logger = options.logger ?? silentLogger;
  }

  async plan(ctx: BindingContext, snapshot?: InterfaceSnapshot): Promise<SriovWiredInterface> {
    const { ip, sysfs } = this.options;
    const current = snapshot ?? (await readInterfaceSnapshot(ip, ctx.netnsName, ctx.cniInterface.name));
    const pciAddress = await pciAddressOf(sysfs, current.link);
    if (pciAddress === undefined) throw new FailedPreconditionError(`${ctx.cniInterface.name} is not a PCI network function`);
    const facts = await readVfFacts(sysfs, pciAddress, ctx.cniInterface.name);
    const [pfListing] = await ip.show(HOST_NETNS, [['link', 'show', 'dev', facts.pf]]);
    let pfBefore: VfPfSettings;
    try {
      pfBefore = parseVfSettings(pfListing, facts.pf, facts.index);
    } catch (err) {
      if (err instanceof FailedPreconditionError) throw new FailedPreconditionError(`SR-IOV VF ${pciAddress} (${ctx.cniInterface.name}): ${err.message}`);
      throw err;
    }
    return planSriov(ctx, current, facts, pfBefore);
  }

  async wire(ctx: BindingContext, planned: SriovWiredInterface): Promise<SriovWiredInterface> {
    const { ip, sysfs } = this.options;
    const { vf } = planned;
    try {
      await ip.apply(HOST_NETNS, [pfCommand(vf.pf, vf.index, planned.pfWired)]);
      await sysfs.write(devicePath(vf.pciAddress, 'driver_override'), VFIO_PCI, 'attribute');
      await sysfs.write(driverPath(vf.driver, 'unbind'), vf.pciAddress, 'action');
      await this.awaitDriver(vf.pciAddress, undefined);
      await sysfs.write(driverPath(VFIO_PCI, 'bind'), vf.pciAddress, 'action');
      await this.awaitDriver(vf.pciAddress, VFIO_PCI);
    } catch (err) {
      await this.unwire(ctx, planned).catch((undoErr) =>
        this.logger.error({ err: undoErr, netns: ctx.netnsName, vf: vf.pciAddress }, 'cannot undo a failed VF wiring'),
      );
      throw new FailedPreconditionError(`SR-IOV VF ${vf.pciAddress} (${planned.netdev.name}): cannot hand it to vfio-pci: ${errorText(err)}`, { cause: err });
    }
    this.logger.debug({ netns: ctx.netnsName, ifname: planned.netdev.name, vf: vf.pciAddress }, 'VF bound to vfio-pci');
    return planned;
  }

  /**
   * Every step runs even when an earlier one failed (a VF left on vfio-pci is worse than a netdev
   * without its routes); the first failure is rethrown at the end.
   */
  async unwire(ctx: BindingContext, state: SriovWiredInterface): Promise<void> {
    const { ip, sysfs } = this.options;
    const { vf, netdev } = state;
    const failures: unknown[] = [];
    const step = async (what: string, run: () => Promise<void>): Promise<void> => {
      try {
        await run();
      } catch (err) {
        failures.push(new FailedPreconditionError(`SR-IOV VF ${vf.pciAddress} (${netdev.name}): ${what}: ${errorText(err)}`, { cause: err }));
      }
    };
    await step('unbind from vfio-pci', async () => {
      if ((await sysfs.linkTarget(devicePath(vf.pciAddress, 'driver'))) === VFIO_PCI) {
        await sysfs.write(driverPath(VFIO_PCI, 'unbind'), vf.pciAddress, 'action');
        await this.awaitDriver(vf.pciAddress, undefined);
      }
    });
    await step('restore driver_override', async () => {
      const now = await sysfs.read(devicePath(vf.pciAddress, 'driver_override'));
      const current = now === undefined || now === '(null)' || now === '' ? undefined : now;
      if (current !== vf.driverOverride) await sysfs.write(devicePath(vf.pciAddress, 'driver_override'), vf.driverOverride ?? '', 'attribute');
    });
    // Before the driver comes back, so that it starts with the MAC and VLAN the plugin left.
    await step(`restore its settings on ${vf.pf}`, () => ip.apply(HOST_NETNS, [pfCommand(vf.pf, vf.index, state.pfBefore)]));
    await step(`bind to ${vf.driver}`, async () => {
      if ((await sysfs.linkTarget(devicePath(vf.pciAddress, 'driver'))) === undefined) {
        await sysfs.write(driverPath(vf.driver, 'bind'), vf.pciAddress, 'action');
        await this.awaitDriver(vf.pciAddress, vf.driver);
      }
    });
    await step(`bring ${netdev.name} back`, () => this.restoreNetdev(ctx, state));
    if (failures.length > 0) throw failures[0];
    this.logger.debug({ netns: ctx.netnsName, ifname: netdev.name, vf: vf.pciAddress }, 'VF back with its driver');
  }

  /**
   * Waits until the VF's `driver` link names `expected` (undefined: no driver). The kernel binds
   * and unbinds within the write, so this normally returns at the first look; it turns a write the
   * kernel took without effect into an error here instead of a wrong decision in the next step.
   */
  private async awaitDriver(pciAddress: string, expected: string | undefined): Promise<void> {
    const { sysfs } = this.options;
    const deadline = Date.now() + (this.options.driverWaitMs ?? DEFAULT_DRIVER_WAIT_MS);
    for (;;) {
      const now = await sysfs.linkTarget(devicePath(pciAddress, 'driver'));
      if (now === expected) return;
      if (Date.now() >= deadline) {
        throw new FailedPreconditionError(`its driver is ${now ?? 'none'}, not ${expected ?? 'none'}, ${this.options.driverWaitMs ?? DEFAULT_DRIVER_WAIT_MS} ms after the write`);
      }
      await sleep(20);
    }
  }

  /** The netdev into the pod netns under its name (from the host namespace when it reappeared there), as CNI left it. */
  private async restoreNetdev(ctx: BindingContext, state: SriovWiredInterface): Promise<void> {
    const { ip } = this.options;
    const { netdev } = state;
    let links: LinkState[];
    try {
      links = parseLinks((await ip.show(ctx.netnsName, [['link', 'show']]))[0]);
    } catch (err) {
      // No netns: the kernel moved the netdev to the host namespace; there it stays.
      if (err instanceof NotFoundError) return;
      throw err;
    }
    if (!links.some((l) => l.name === netdev.name)) {
      const hostName = await this.waitForHostNetdev(state);
      await ip.apply(HOST_NETNS, [['link', 'set', 'dev', hostName, 'netns', ctx.netnsName, 'name', netdev.name]]);
    }
    await ip.apply(ctx.netnsName, netdevRestoreCommands(netdev));
  }

  /** The name of the VF's netdev in the host namespace once its driver has registered it. */
  private async waitForHostNetdev(state: SriovWiredInterface): Promise<string> {
    const { sysfs } = this.options;
    const deadline = Date.now() + (this.options.netdevWaitMs ?? DEFAULT_NETDEV_WAIT_MS);
    for (;;) {
      const names = (await sysfs.list(devicePath(state.vf.pciAddress, 'net'))) ?? [];
      if (names.length === 1) {
        assertInterfaceName(names[0]!);
        return names[0]!;
      }
      if (names.length > 1) throw new InternalError(`VF ${state.vf.pciAddress} has several netdevs: ${names.join(', ')}`);
      if (Date.now() >= deadline) {
        throw new FailedPreconditionError(
          `no network interface appeared for the VF under ${join(sysfs.root, devicePath(state.vf.pciAddress, 'net'))} after binding it to ${state.vf.driver}`,
        );
      }
      await sleep(100);
    }
  }
}
