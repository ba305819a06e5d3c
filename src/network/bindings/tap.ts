/**
 * The "tap" binding (Virtlet's model): the CNI veth in the pod netns becomes one port of a bridge
 * whose other port is a TAP that QEMU opens. The VM's NIC takes over everything CNI gave the veth
 * (MAC, addresses, routes: handed to the VM by our DHCP server), so the veth itself is stripped to
 * a bare bridge port with a new MAC. Everything happens inside the pod netns, in one `ip -batch`
 * process plus one `nft` process for the DHCP isolation rules, run side by side.
 */
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import type { IpCommand, IpRunner } from '../iproute.js';
import { DHCP_SERVER_ADDRESS } from '../dhcp/server_address.js';
import type { DhcpIsolation, IsolationSpec, NftRunner } from '../isolation.js';
import type { SysctlRunner } from '../sysctl.js';
import {
  CALICO_NETNS_SYSCTLS,
  calicoArpRemovalScript,
  calicoArpScript,
  calicoGatewayOf,
  calicoSysctls,
  calicoVmView,
  calicoWireCommands,
  fakeGatewayFor,
  type CalicoGateway,
} from './calico.js';
import { assertInterfaceName, bridgeMacFor, interfaceNames, normalizeMac, vethMacFor } from '../names.js';
import type { VmInterface } from '../types.js';
import { hasIpv6, IPV6_NETNS_SYSCTLS, ipv6RouterSysctls, tapIpv6State, tapIpv6WireCommands } from '../ipv6/tap_ipv6.js';
import type { NetworkBinding, UnwireOptions } from './binding.js';
import type { BindingContext, TapWiredInterface } from './types.js';
import {
  addressRestoreCommand,
  parseLinks,
  readInterfaceSnapshot,
  routeDeleteCommand,
  routeRestoreCommand,
  routeRestoreOrder,
  linksOrGone,
  type InterfaceSnapshot,
  type LinkState,
} from './snapshot.js';

export interface TapBindingOptions {
  ip: IpRunner;
  isolation: DhcpIsolation;
  logger?: Logger;
  /**
   * virtio-net queues QEMU will use. QEMU asks for IFF_MULTI_QUEUE exactly when queues > 1, and the
   * kernel refuses to attach to an existing TAP whose multi_queue flag differs, so the TAP is made
   * to match.
   */
  queues?: number;
  /**
   * Owner of the TAP. A TAP without owner accepts any opener that can open /dev/net/tun; with one,
   * only that uid/gid (or CAP_NET_ADMIN). Set it when QEMU runs as an unprivileged user.
   */
  tapOwner?: { uid?: number; gid?: number };
  /**
   * Calico-shaped results (calico.ts) get a fake gateway in the pod IP's /`subnet`; unset, such
   * a result is refused (DHCP cannot give a VM its link-scope gateway).
   */
  calico?: { subnet: number; sysctl: SysctlRunner; nft: NftRunner };
  /** Interfaces with IPv6 addresses make the pod netns their router (ipv6/tap_ipv6.ts); unset, they are refused. */
  ipv6?: { sysctl: SysctlRunner };
}

/**
 * Bridge and TAP of interface `index` join link group BASE + index, so unwiring deletes both with
 * one `ip link delete group`: the kernel then unregisters them together and waits for one RCU grace
 * period instead of one per device (measured: ~40 ms against ~65 ms for two deletes).
 * 0x766d6c00 spells "vml"; nothing else in a pod netns uses groups.
 */
export const LINK_GROUP_BASE = 0x766d6c00;

export function linkGroupFor(index: number): number {
  return LINK_GROUP_BASE + index;
}

/** The route the DHCP server's replies to 255.255.255.255 need (ENETUNREACH without it). */
export const LIMITED_BROADCAST_ROUTE = '255.255.255.255/32';

function isolationSpec(state: TapWiredInterface): IsolationSpec {
  return {
    uplink: state.uplink.name,
    bridge: state.bridge.name,
    bridgeMac: state.bridge.mac,
    tap: state.tap.name,
    ...(state.calico ? { localAddresses: [state.calico.fakeGateway] } : {}),
  };
}

function checkId(value: number | undefined, what: string): void {
  if (value !== undefined && (!Number.isInteger(value) || value < 0 || value > 0xfffffffe)) {
    throw new InvalidArgumentError(`${what} ${value} is not a valid id`);
  }
}

/** Decides the wiring of `ctx`'s interface from its snapshot. Pure. */
export function planTap(
  ctx: BindingContext,
  snapshot: InterfaceSnapshot,
  options: Pick<TapBindingOptions, 'queues' | 'tapOwner'> & {
    /** The Calico subnet and the netns sysctls read before wiring, when the result has Calico's shape. */
    calico?: { subnet: number; sysctlsBefore: Record<string, string> };
    /** The netns sysctls read before wiring, when the interface has IPv6 addresses. */
    ipv6?: { sysctlsBefore: Record<string, string> };
  } = {},
): TapWiredInterface {
  const { link } = snapshot;
  const ifname = ctx.cniInterface.name;
  assertInterfaceName(ifname);
  if (link.name !== ifname) throw new InvalidArgumentError(`snapshot is of ${link.name}, not ${ifname}`);
  if (link.kind !== 'veth') {
    throw new FailedPreconditionError(`the tap binding needs a veth; ${ifname} is ${link.kind ?? 'a plain device'}`);
  }
  if (link.mac === undefined) throw new FailedPreconditionError(`${ifname} has no Ethernet address`);
  const names = ctx.prewired ?? interfaceNames(ctx.sandboxId, ctx.index);
  if (link.master !== undefined) {
    throw new FailedPreconditionError(`${ifname} is already a port of ${link.master}; unwire the persisted state first`);
  }
  if (!ctx.prewired) {
    const leftovers = snapshot.links.filter((l) => l.name === names.bridge || l.name === names.tap).map((l) => l.name);
    if (leftovers.length > 0) {
      throw new FailedPreconditionError(`${leftovers.join(' and ')} already exist in ${ctx.netnsName}; unwire first`);
    }
  }
  const queues = options.queues ?? 1;
  if (!Number.isInteger(queues) || queues < 1 || queues > 256) {
    throw new InvalidArgumentError(`queues ${queues} must be an integer in 1..256`);
  }
  checkId(options.tapOwner?.uid, 'TAP owner uid');
  checkId(options.tapOwner?.gid, 'TAP owner gid');

  const originalMac = link.mac;
  const wiredMac = vethMacFor(ctx.sandboxId, ctx.index, originalMac);
  const bridgeMac = bridgeMacFor(ctx.sandboxId, ctx.index, [originalMac, wiredMac]);
  const calicoShape = calicoGatewayOf(ctx.cniInterface);
  let calico: CalicoGateway | undefined;
  if (calicoShape) {
    if (!options.calico) {
      throw new FailedPreconditionError(`${ifname} has a /32 with the link-scope gateway ${calicoShape.gateway} (Calico's result), which DHCP cannot give a VM`);
    }
    calico = {
      podAddress: calicoShape.address.address,
      podGateway: calicoShape.gateway,
      fakeGateway: fakeGatewayFor(calicoShape.address.address, options.calico.subnet),
      prefixLength: options.calico.subnet,
      sysctlsBefore: { ...options.calico.sysctlsBefore },
    };
  }
  const view = calico ? calicoVmView(ctx.cniInterface, calico) : ctx.cniInterface;
  const vm: VmInterface = {
    name: ifname,
    mac: originalMac,
    mtu: link.mtu,
    ips: view.ips.map((ip) => ({ ...ip })),
    routes: view.routes.map((route) => ({ ...route })),
    binding: { kind: 'tap', tap: names.tap, bridge: names.bridge },
  };
  const tap: TapWiredInterface['tap'] = { name: names.tap, multiQueue: queues > 1 };
  if (options.tapOwner?.uid !== undefined) tap.uid = options.tapOwner.uid;
  if (options.tapOwner?.gid !== undefined) tap.gid = options.tapOwner.gid;
  const uplink: TapWiredInterface['uplink'] = {
    name: ifname,
    originalMac,
    wiredMac,
    mtu: link.mtu,
    wasUp: link.up,
    addresses: snapshot.addresses,
    routes: snapshot.routes,
  };
  if (link.addrGenMode !== undefined) uplink.addrGenMode = link.addrGenMode;
  if (hasIpv6(vm) && !options.ipv6) {
    throw new FailedPreconditionError(`${ifname} has IPv6 addresses, and this netd cannot route IPv6 for a VM`);
  }
  return {
    kind: 'tap',
    version: 1,
    vm,
    uplink,
    bridge: { name: names.bridge, mac: bridgeMac },
    tap,
    linkGroup: linkGroupFor(ctx.index),
    ...(ctx.prewired ? { prewired: true as const } : {}),
    ...(calico ? { calico } : {}),
    ...(options.ipv6 && hasIpv6(vm) ? { ipv6: tapIpv6State(bridgeMac, options.ipv6.sysctlsBefore) } : {}),
  };
}

// ageing_time 0 turns off MAC learning's memory: with two ports flooding costs nothing, while a
// learned entry can go stale (QEMU restarted, a MAC seen on the wrong port) and black-hole the VM
// until it ages out (300 s by default). No multicast snooping for the same reason.
function bridgeCreateCommand(name: string, group: string, mac: string | undefined, mtu: string | undefined): IpCommand {
  return [
    'link', 'add', 'name', name, 'group', group, ...(mac ? ['address', mac] : []), ...(mtu ? ['mtu', mtu] : []),
    'type', 'bridge', 'ageing_time', '0', 'mcast_snooping', '0', 'stp_state', '0',
  ];
}

// Created through /dev/net/tun (rtnetlink refuses TAP creation). vnet_hdr matches what QEMU asks
// for when it attaches (it resets the feature flags anyway); multi_queue must match.
function tapCreateCommand(tap: TapWiredInterface['tap']): IpCommand {
  const owner = [...(tap.uid !== undefined ? ['user', String(tap.uid)] : []), ...(tap.gid !== undefined ? ['group', String(tap.gid)] : [])];
  return ['tuntap', 'add', 'dev', tap.name, 'mode', 'tap', 'vnet_hdr', ...(tap.multiQueue ? ['multi_queue'] : []), ...owner];
}

/**
 * The `ip -batch` that makes a warm netns's bridge and TAP in advance, both down and in the link
 * group of interface 0 (so an unwire deletes them as it deletes its own). Pure.
 */
export function tapPrewireCommands(names: { bridge: string; tap: string }, tap: Omit<TapWiredInterface['tap'], 'name'>): IpCommand[] {
  return [bridgeCreateCommand(names.bridge, String(linkGroupFor(0)), undefined, undefined), tapCreateCommand({ ...tap, name: names.tap })];
}

/** The `ip -batch` that wires a plan. Pure. */
export function tapWireCommands(state: TapWiredInterface): IpCommand[] {
  const { uplink, bridge, tap } = state;
  const mtu = String(uplink.mtu);
  const group = String(state.linkGroup);
  // Bridge ports carry no IPv6 presence of their own: no link-local address, no RS/DAD/MLD with
  // their MACs on the pod network. Only where IPv6 is on at all (else the command would fail).
  const noLinkLocal = (dev: string): IpCommand[] =>
    uplink.addrGenMode === undefined ? [] : [['link', 'set', 'dev', dev, 'addrgenmode', 'none']];
  return [
    // Routes first, gateway routes before the routes that make their gateways reachable.
    ...routeRestoreOrder(uplink.routes)
      .reverse()
      .map((route) => routeDeleteCommand(route, uplink.name)),
    ...noLinkLocal(uplink.name),
    // A bridge delivers frames for a port's own MAC to itself, so the veth must give up the MAC
    // the VM takes over; a live MAC change is fine on a veth.
    ['link', 'set', 'dev', uplink.name, 'address', uplink.wiredMac],
    ['address', 'flush', 'dev', uplink.name],
    state.prewired ? ['link', 'set', 'dev', bridge.name, 'group', group, 'address', bridge.mac, 'mtu', mtu] : bridgeCreateCommand(bridge.name, group, bridge.mac, mtu),
    ...noLinkLocal(bridge.name),
    ...(state.prewired ? [] : [tapCreateCommand(tap)]),
    ...noLinkLocal(tap.name),
    ['link', 'set', 'dev', tap.name, 'group', group, 'mtu', mtu, 'master', bridge.name, 'up'],
    ['link', 'set', 'dev', uplink.name, 'master', bridge.name, 'up'],
    ['link', 'set', 'dev', bridge.name, 'up'],
    // The DHCP server's own address (its server id), where the VM's renewals at T1 go.
    ['address', 'replace', `${DHCP_SERVER_ADDRESS}/32`, 'dev', bridge.name, 'scope', 'link'],
    ['route', 'replace', LIMITED_BROADCAST_ROUTE, 'dev', bridge.name],
    // A reply to the VM's own address reaches exactly this VM on exactly this bridge: one
    // 255.255.255.255 route cannot serve several bridges, and a socket cannot pick a device.
    ...state.vm.ips
      .filter((ip) => ip.family === 4)
      .flatMap((ip): IpCommand[] => [
        ['neigh', 'replace', ip.address, 'lladdr', state.vm.mac, 'dev', bridge.name, 'nud', 'permanent'],
        ['route', 'replace', `${ip.address}/32`, 'dev', bridge.name],
      ]),
    ...(state.ipv6 ? tapIpv6WireCommands(state.vm, bridge.name, state.ipv6) : []),
  ];
}

/**
 * The `ip -batch` that undoes `state` given the links that exist now: deletes TAP and bridge
 * where present (deleting the bridge releases the veth and drops the broadcast route), then puts
 * MAC, addresses, routes and up/down state back on the veth if it is still there. With
 * `netnsLeaving` (see UnwireOptions) bridge and TAP stay and the veth only leaves the bridge. Pure.
 */
export function tapUnwireCommands(state: TapWiredInterface, links: readonly LinkState[], options: UnwireOptions = {}): IpCommand[] {
  const { uplink, bridge, tap } = state;
  if (options.netnsLeaving) {
    const veth = links.find((l) => l.name === uplink.name);
    if (!veth) return [];
    if (veth.master !== undefined && veth.master !== bridge.name) {
      throw new FailedPreconditionError(`${uplink.name} is now a port of ${veth.master}, not of ${bridge.name}`);
    }
    return [...(veth.master !== undefined ? [['link', 'set', 'dev', uplink.name, 'nomaster']] : []), ...uplinkRestoreCommands(uplink)];
  }
  const cmds: IpCommand[] = [];
  // Ours by name and by kind: a device of another kind under one of our names was not made here.
  const ours = links.filter(
    (l) => (l.name === tap.name && l.kind === 'tun') || (l.name === bridge.name && l.kind === 'bridge'),
  );
  const grouped = links.filter((l) => l.group === state.linkGroup);
  // The group delete only when the group holds nothing but our devices (a TAP can be left outside
  // the group by a wiring that failed half-way); anything else goes by name.
  const byGroup = grouped.length > 0 && grouped.every((l) => ours.includes(l));
  if (byGroup) cmds.push(['link', 'delete', 'group', String(state.linkGroup)]);
  for (const link of ours) {
    if (!(byGroup && link.group === state.linkGroup)) cmds.push(['link', 'delete', 'dev', link.name]);
  }
  const veth = links.find((l) => l.name === uplink.name);
  if (!veth) return cmds;
  if (veth.master !== undefined && veth.master !== bridge.name) {
    // Someone else enslaved it since; taking it away from them is not ours to do.
    throw new FailedPreconditionError(`${uplink.name} is now a port of ${veth.master}, not of ${bridge.name}`);
  }
  cmds.push(...uplinkRestoreCommands(uplink));
  return cmds;
}

/**
 * The `ip -batch` a teardown runs without reading the links first (`netnsLeaving`): the veth
 * leaves whatever bridge it is on (CNI DEL deletes or takes it next) and gets back what CNI gave
 * it. Every command is idempotent; when one fails (the veth or the netns gone), the caller reads
 * the links and goes by tapUnwireCommands. Pure.
 */
export function tapReleaseCommands(state: TapWiredInterface): IpCommand[] {
  return [['link', 'set', 'dev', state.uplink.name, 'nomaster'], ...uplinkRestoreCommands(state.uplink)];
}

/** MAC, addresses, routes and up/down state back on the veth, as CNI left it. Pure. */
function uplinkRestoreCommands(uplink: TapWiredInterface['uplink']): IpCommand[] {
  const cmds: IpCommand[] = [['link', 'set', 'dev', uplink.name, 'address', uplink.originalMac]];
  if (uplink.addrGenMode !== undefined) {
    cmds.push(['link', 'set', 'dev', uplink.name, 'addrgenmode', uplink.addrGenMode]);
  }
  for (const addr of uplink.addresses) cmds.push(addressRestoreCommand(addr, uplink.name));
  for (const route of routeRestoreOrder(uplink.routes)) cmds.push(routeRestoreCommand(route, uplink.name));
  cmds.push(['link', 'set', 'dev', uplink.name, uplink.wasUp ? 'up' : 'down']);
  return cmds;
}

/** Only the recorded values of `keys`: a tampered record sets nothing else. */
function knownSysctls(values: Record<string, string>, keys: readonly string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(values).filter(([key]) => keys.includes(key)));
}

/** Runs both tasks to the end (no half-finished process left behind) and rethrows the first failure. */
async function both(a: Promise<unknown>, b: Promise<unknown>): Promise<void> {
  const results = await Promise.allSettled([a, b]);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

export class TapBinding implements NetworkBinding<TapWiredInterface> {
  readonly kind = 'tap' as const;
  private readonly logger: Logger;

  constructor(private readonly options: TapBindingOptions) {
    this.logger = options.logger ?? silentLogger;
  }

  /**
   * Makes, in a warm netns that no sandbox has yet, what wiring its interface 0 (`uplinkName`)
   * will need: bridge and TAP (down) and the DHCP isolation rules. The sandbox that adopts the
   * netns passes `names` as BindingContext.prewired.
   */
  async prewire(netnsName: string, names: { bridge: string; tap: string }, uplinkName: string): Promise<void> {
    const queues = this.options.queues ?? 1;
    const tap: Omit<TapWiredInterface['tap'], 'name'> = { multiQueue: queues > 1 };
    if (this.options.tapOwner?.uid !== undefined) tap.uid = this.options.tapOwner.uid;
    if (this.options.tapOwner?.gid !== undefined) tap.gid = this.options.tapOwner.gid;
    await both(
      this.options.ip.apply(netnsName, tapPrewireCommands(names, tap)),
      this.options.isolation.install(netnsName, { uplink: uplinkName, bridge: names.bridge }),
    );
  }

  async plan(ctx: BindingContext, snapshot?: InterfaceSnapshot): Promise<TapWiredInterface> {
    const current = snapshot ?? (await readInterfaceSnapshot(this.options.ip, ctx.netnsName, ctx.cniInterface.name));
    const { calico } = this.options;
    const calicoPlan =
      calico && calicoGatewayOf(ctx.cniInterface)
        ? { subnet: calico.subnet, sysctlsBefore: await calico.sysctl.read(ctx.netnsName, CALICO_NETNS_SYSCTLS) }
        : undefined;
    const ipv6Plan =
      this.options.ipv6 && ctx.cniInterface.ips.some((ip) => ip.family === 6)
        ? { sysctlsBefore: await this.options.ipv6.sysctl.read(ctx.netnsName, IPV6_NETNS_SYSCTLS) }
        : undefined;
    const state = planTap(ctx, current, {
      ...(ipv6Plan ? { ipv6: ipv6Plan } : {}),
      ...(this.options.queues !== undefined ? { queues: this.options.queues } : {}),
      ...(this.options.tapOwner ? { tapOwner: this.options.tapOwner } : {}),
      ...(calicoPlan ? { calico: calicoPlan } : {}),
    });
    if (ctx.cniInterface.mac !== undefined && normalizeMac(ctx.cniInterface.mac) !== state.uplink.originalMac) {
      this.logger.warn(
        { netns: ctx.netnsName, ifname: ctx.cniInterface.name, cniMac: ctx.cniInterface.mac, mac: state.uplink.originalMac },
        'CNI result MAC differs from the interface; the VM gets the interface MAC',
      );
    }
    return state;
  }

  async wire(ctx: BindingContext, planned: TapWiredInterface): Promise<TapWiredInterface> {
    const started = performance.now();
    try {
      // The nft rules name interfaces as strings, so they can go in while the bridge is being built.
      // Prewired, the drop rules went in with the devices; installed again, the table gains the
      // redirect to the DHCP server address, which needs the bridge's MAC only known now.
      await both(
        this.options.ip.apply(ctx.netnsName, tapWireCommands(planned)),
        this.options.isolation.install(ctx.netnsName, isolationSpec(planned)),
      );
      if (planned.calico) await this.wireCalicoGateway(ctx, planned, planned.calico);
      if (planned.ipv6) await this.requireIpv6().sysctl.write(ctx.netnsName, ipv6RouterSysctls());
    } catch (err) {
      await this.unwire(ctx, planned).catch((undoErr) =>
        this.logger.error({ err: undoErr, netns: ctx.netnsName, ifname: planned.uplink.name }, 'cannot undo a failed wiring'),
      );
      throw err;
    }
    this.logger.debug(
      { netns: ctx.netnsName, ifname: planned.uplink.name, tap: planned.tap.name, ms: performance.now() - started },
      'interface wired',
    );
    return planned;
  }

  async unwire(ctx: BindingContext, state: TapWiredInterface, options: UnwireOptions = {}): Promise<void> {
    const started = performance.now();
    const since = () => Math.round((performance.now() - started) * 100) / 100;
    // A Calico gateway or an IPv6 router changed netns-wide settings that a kept warm netns must
    // not pass on: those states take the whole unwiring.
    if (options.netnsLeaving && !state.calico && !state.ipv6) {
      await this.release(ctx, state);
      this.logger.debug({ netns: ctx.netnsName, ifname: state.uplink.name, ms: since() }, 'interface released from its bridge');
      return;
    }
    const ms: Record<string, number> = {};
    // The isolation table names interfaces as strings only: it goes while the links are read,
    // one process start less on StopPodSandbox's path. (remove() accepts a netns that is gone.)
    const isolationRemoved = this.options.isolation.remove(ctx.netnsName, isolationSpec(state)).then(() => void (ms.nftDone = since()));
    let links: LinkState[];
    try {
      links = parseLinks((await this.options.ip.show(ctx.netnsName, [['link', 'show']]))[0]);
      ms.showDone = since();
    } catch (err) {
      await isolationRemoved.catch(() => {});
      // The netns is gone, and with it everything this binding ever made in it.
      if (err instanceof NotFoundError) return;
      throw err;
    }
    await both(this.options.ip.apply(ctx.netnsName, tapUnwireCommands(state, links)).then(() => void (ms.applyDone = since())), isolationRemoved);
    if (state.calico) await this.unwireCalicoGateway(ctx, state, state.calico);
    if (state.ipv6) await this.requireIpv6().sysctl.write(ctx.netnsName, knownSysctls(state.ipv6.sysctlsBefore, IPV6_NETNS_SYSCTLS));
    this.logger.debug({ netns: ctx.netnsName, ifname: state.uplink.name, ms: since(), stepsMs: ms }, 'interface unwired');
  }

  /**
   * The veth back as CNI left it, off the bridge; bridge, TAP and isolation table stay for the
   * netns's end (UnwireOptions.netnsLeaving). One `ip -batch` without a read first; when it fails
   * (veth or netns gone, a half-undone state), the links are read and the batch fits them.
   */
  private async release(ctx: BindingContext, state: TapWiredInterface): Promise<void> {
    try {
      await this.options.ip.apply(ctx.netnsName, tapReleaseCommands(state));
      return;
    } catch (err) {
      this.logger.debug({ err, netns: ctx.netnsName, ifname: state.uplink.name }, 'releasing an interface blindly failed; reading its links');
    }
    const links = await linksOrGone(this.options.ip, ctx.netnsName);
    if (!links) return;
    const commands = tapUnwireCommands(state, links, { netnsLeaving: true });
    if (commands.length > 0) await this.options.ip.apply(ctx.netnsName, commands);
  }

  /** The bridge becomes the VM's gateway (calico.ts): its address and routes, the ARP sender rewrite, forwarding. */
  private async wireCalicoGateway(ctx: BindingContext, state: TapWiredInterface, gw: CalicoGateway): Promise<void> {
    const calico = this.requireCalico();
    await both(
      this.options.ip.apply(ctx.netnsName, calicoWireCommands(gw, state.bridge.name, state.uplink.routes)),
      calico.nft.apply(ctx.netnsName, calicoArpScript(gw, state.bridge.name)),
    );
    await calico.sysctl.write(ctx.netnsName, calicoSysctls(state.bridge.name));
  }

  /** The bridge's address and routes went with it; the ARP table and the sysctls are put back. */
  private async unwireCalicoGateway(ctx: BindingContext, state: TapWiredInterface, gw: CalicoGateway): Promise<void> {
    const calico = this.requireCalico();
    await calico.nft.apply(ctx.netnsName, calicoArpRemovalScript(state.bridge.name));
    const before = Object.fromEntries(Object.entries(gw.sysctlsBefore).filter(([key]) => (CALICO_NETNS_SYSCTLS as readonly string[]).includes(key)));
    await calico.sysctl.write(ctx.netnsName, before);
  }

  private requireIpv6(): NonNullable<TapBindingOptions['ipv6']> {
    if (!this.options.ipv6) throw new FailedPreconditionError('an IPv6 router was wired, but this netd has no IPv6 settings');
    return this.options.ipv6;
  }

  private requireCalico(): NonNullable<TapBindingOptions['calico']> {
    if (!this.options.calico) throw new FailedPreconditionError('a Calico gateway was wired, but this netd has no Calico settings');
    return this.options.calico;
  }
}
