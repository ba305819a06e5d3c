/**
 * The masquerade binding's pure parts (KubeVirt's "masquerade"): what a pod asks for (the
 * `vmlet.io/network-binding: masquerade` annotation and its declared ports), the plan for one
 * interface, the `ip -batch` that wires and unwires it and the nftables NAT table in the pod netns.
 *
 * The CNI veth keeps the pod IP, its MAC and its routes: the netns is the pod's router. The VM sits
 * behind it on a bridge of its own with an address of an internal CIDR (default 10.0.2.0/24: the
 * bridge is .1, the VM .2), which vmlet's DHCP hands it. The NAT table:
 *   - DNATs what reaches the pod IP (from the pod network, from the VM itself, and from the netns's
 *     own processes) on the pod's declared container ports, or on every port when it declares
 *     none, to the VM;
 *   - SNATs what the VM sends out of the veth to the pod IP, and a VM reaching itself through the
 *     pod IP (hairpin) to the internal gateway, so the reply comes back through the netns;
 *   - drops new connections from the pod network to the VM's internal address that no DNAT made
 *     (forwarding is on: the netns must not route the internal CIDR for others), and anything the
 *     VM sends out with a source outside the internal CIDR;
 *   - keeps DHCP on its side: the pod network's DHCP clients never reach vmlet's responder.
 * IPv6 likewise (NAT66), when CNI gave the interface an IPv6 address: the VM gets an address of an
 * internal IPv6 CIDR (default fd10:0:2::/120, the bridge ::1, the VM ::2), which vmlet's router
 * advertisements and DHCPv6 serve (ipv6/services.ts), and an `ip6` table of the same name holds
 * the same rules for the pod's IPv6 address.
 *
 * Which interfaces: the pod annotation asks it for the default network's interface; an element
 * of the Multus JSON list asks it for that network's (cni/pod_networks.ts). The interface at
 * position i in the CNI result takes the i-th block of the CIDR's size (eth0 10.0.2.0/24, the
 * next 10.0.3.0/24, …), so several masqueraded interfaces never share an internal network.
 */
import { FailedPreconditionError, InvalidArgumentError } from '../../errors.js';
import type { IpCommand } from '../iproute.js';
import { DHCP_SERVER_ADDRESS } from '../dhcp/server_address.js';
import { parseCidr, parseIp } from '../cni/ip.js';
import { assertInterfaceName, bridgeMacFor, interfaceNames } from '../names.js';
import { formatIpv6, linkLocalFromMac } from '../ipv6/address.js';
import type { PortMapping, VmInterface } from '../types.js';
import type { BindingContext, MasqueradeInternalNetwork, MasqueradePort, MasqueradeRequest, MasqueradeWiredInterface } from './types.js';
import type { InterfaceSnapshot, LinkState } from './snapshot.js';
// The tap binding's link groups: a warm netns's prewired bridge and TAP are in group 0's already.
import { linkGroupFor } from './tap.js';

export type { MasqueradeInternalNetwork, MasqueradePort, MasqueradeRequest, MasqueradeWiredInterface };

/**
 * The pod annotation that picks the binding of the pod's default network interface; the same key
 * in an element of the Multus JSON list picks the binding of that network's interface.
 */
export const NETWORK_BINDING_ANNOTATION = 'vmlet.io/network-binding';
/** Its values: KubeVirt's names. "bridge" is the default (the tap binding). */
export const NETWORK_BINDING_VALUES = ['bridge', 'masquerade'] as const;
/** Default of --masquerade-cidr, as KubeVirt's. */
export const DEFAULT_MASQUERADE_CIDR = '10.0.2.0/24';
/** Default of --masquerade-ipv6-cidr, as KubeVirt's. */
export const DEFAULT_MASQUERADE_IPV6_CIDR = 'fd10:0:2::/120';
/** The netns sysctls the wiring sets (read before wiring, set back after). */
export const MASQUERADE_NETNS_SYSCTLS = ['net.ipv4.conf.all.forwarding', 'net.ipv4.conf.all.send_redirects'] as const;
/** The netns sysctl the IPv6 part sets besides (read only when the interface has IPv6). */
export const MASQUERADE_IPV6_NETNS_SYSCTLS = ['net.ipv6.conf.all.forwarding'] as const;

function v4Text(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
}

function v6Text(value: bigint): string {
  const bytes = Buffer.alloc(16);
  for (let i = 0; i < 16; i++) bytes[i] = Number((value >> BigInt(8 * (15 - i))) & 0xffn);
  return formatIpv6(bytes);
}

const FAMILY = {
  4: { bits: 32, minPrefix: 8, maxPrefix: 30, text: v4Text, name: 'IPv4' },
  6: { bits: 128, minPrefix: 64, maxPrefix: 126, text: v6Text, name: 'IPv6' },
} as const;

/**
 * The internal network of a masquerade CIDR for the interface at `index` of the CNI result: the
 * CIDR itself for index 0, the index-th following block of its size otherwise; the gateway is
 * its first host, the VM the second.
 */
function internalNetwork(cidr: string, family: 4 | 6, index: number): MasqueradeInternalNetwork {
  const f = FAMILY[family];
  const parsed = parseCidr(cidr);
  if (!parsed || parsed.family !== family) throw new InvalidArgumentError(`masquerade CIDR ${JSON.stringify(cidr)} is not an ${f.name} CIDR`);
  if (parsed.prefixLength < f.minPrefix || parsed.prefixLength > f.maxPrefix) {
    throw new InvalidArgumentError(`masquerade CIDR ${cidr} must be between /${f.minPrefix} and /${f.maxPrefix}`);
  }
  const hostBits = BigInt(f.bits - parsed.prefixLength);
  const base = (parsed.value >> hostBits) << hostBits;
  if (base !== parsed.value) throw new InvalidArgumentError(`masquerade CIDR ${cidr} has host bits set (${f.text(base)}/${parsed.prefixLength}?)`);
  if (!Number.isInteger(index) || index < 0) throw new InvalidArgumentError(`interface index ${index} is not a position`);
  const network = base + (BigInt(index) << hostBits);
  if (network >> BigInt(f.bits) !== 0n) {
    throw new FailedPreconditionError(`masquerade CIDR ${cidr} has no block for interface ${index} (the address space ends before it)`);
  }
  return { cidr: `${f.text(network)}/${parsed.prefixLength}`, gateway: f.text(network + 1n), vm: f.text(network + 2n), prefixLength: parsed.prefixLength };
}

/** The internal IPv4 network of a `--masquerade-cidr` value for the interface at `index` (0: the CIDR itself). */
export function masqueradeNetwork(cidr: string, index = 0): MasqueradeInternalNetwork {
  return internalNetwork(cidr, 4, index);
}

/** The internal IPv6 network of a `--masquerade-ipv6-cidr` value (/64../126) for the interface at `index`. */
export function masqueradeIpv6Network(cidr: string, index = 0): MasqueradeInternalNetwork {
  return internalNetwork(cidr, 6, index);
}

function inside(internal: MasqueradeInternalNetwork, address: string): boolean {
  const net = parseCidr(internal.cidr)!;
  const ip = parseIp(address);
  if (!ip || ip.family !== net.family) return false;
  const hostBits = BigInt((net.family === 4 ? 32 : 128) - net.prefixLength);
  return ip.value >> hostBits === net.value >> hostBits;
}

/**
 * What the pod asks of the binding of its default interface: masquerade (with the declared
 * container ports, deduplicated; none: every port) or undefined for the bridge (tap) binding.
 * An unknown value is INVALID_ARGUMENT.
 */
export function masqueradeRequestOf(annotations: Readonly<Record<string, string>>, portMappings: readonly PortMapping[]): MasqueradeRequest | undefined {
  const value = annotations[NETWORK_BINDING_ANNOTATION];
  if (value === undefined || value === 'bridge') return undefined;
  if (value !== 'masquerade') {
    throw new InvalidArgumentError(`annotation ${NETWORK_BINDING_ANNOTATION}: ${JSON.stringify(value)} is not one of ${NETWORK_BINDING_VALUES.join(', ')}`);
  }
  return masqueradeRequestFor(portMappings);
}

/**
 * The masquerade request of an interface with the pod's declared container ports (deduplicated,
 * sorted; none: every port); `secondary`: the interface is not of the pod's default network.
 */
export function masqueradeRequestFor(portMappings: readonly PortMapping[], options: { secondary?: boolean } = {}): MasqueradeRequest {
  const seen = new Set<string>();
  const ports: MasqueradePort[] = [];
  for (const m of portMappings) {
    if (!Number.isInteger(m.containerPort) || m.containerPort < 1 || m.containerPort > 65535) {
      throw new InvalidArgumentError(`port mapping: container port ${m.containerPort} is not in 1..65535`);
    }
    if (!['tcp', 'udp', 'sctp'].includes(m.protocol)) throw new InvalidArgumentError(`port mapping: protocol ${JSON.stringify(m.protocol)} is not tcp, udp or sctp`);
    const key = `${m.protocol}/${m.containerPort}`;
    if (seen.has(key)) continue;
    seen.add(key);
    ports.push({ protocol: m.protocol, port: m.containerPort });
  }
  ports.sort((a, b) => a.protocol.localeCompare(b.protocol) || a.port - b.port);
  return { ports, ...(options.secondary ? { secondary: true as const } : {}) };
}

/** The NAT table's name: it carries the owner id (which vmlet made it) and the bridge (which interface). */
export function masqueradeTableName(ownerId: string, bridge: string): string {
  if (!/^[0-9a-f]{8,16}$/.test(ownerId)) throw new InvalidArgumentError(`owner id ${JSON.stringify(ownerId)} is not hex`);
  assertInterfaceName(bridge);
  return `vmlet-${ownerId.slice(0, 8)}-masq-${bridge}`;
}

export interface MasqueradePlanOptions {
  /** The internal IPv4 network of this interface (masqueradeNetwork with the interface's index). */
  internal: MasqueradeInternalNetwork;
  /** The internal IPv6 network of this interface; used when CNI gave the interface an IPv6 address. */
  internal6?: MasqueradeInternalNetwork;
  ownerId: string;
  sysctlsBefore: Record<string, string>;
  tapOwner?: { uid?: number; gid?: number };
  queues?: number;
}

/** Decides the wiring of `ctx`'s interface (which must carry a masquerade request) from its snapshot. Pure. */
export function planMasquerade(ctx: BindingContext, snapshot: InterfaceSnapshot, options: MasqueradePlanOptions): MasqueradeWiredInterface {
  const request = ctx.masquerade;
  if (!request) throw new InvalidArgumentError(`${ctx.cniInterface.name} was not asked to be masqueraded`);
  const { link } = snapshot;
  const ifname = ctx.cniInterface.name;
  assertInterfaceName(ifname);
  if (link.name !== ifname) throw new InvalidArgumentError(`snapshot is of ${link.name}, not ${ifname}`);
  if (link.kind !== 'veth') throw new FailedPreconditionError(`the masquerade binding needs a veth; ${ifname} is ${link.kind ?? 'a plain device'}`);
  if (link.mac === undefined) throw new FailedPreconditionError(`${ifname} has no Ethernet address`);
  if (link.master !== undefined) throw new FailedPreconditionError(`${ifname} is a port of ${link.master}; unwire the persisted state first`);
  const podAddress = ctx.cniInterface.ips.find((ip) => ip.family === 4)?.address;
  if (podAddress === undefined) {
    throw new FailedPreconditionError(`${ifname} has no IPv4 address from CNI; the masquerade binding translates to the pod's IPv4 address`);
  }
  const { internal } = options;
  if (inside(internal, podAddress)) {
    throw new FailedPreconditionError(`the pod IP ${podAddress} is inside the masquerade CIDR ${internal.cidr}; choose another --masquerade-cidr`);
  }
  // NAT66 only where CNI gave the interface an IPv6 address to translate to.
  const podAddress6 = options.internal6 ? ctx.cniInterface.ips.find((ip) => ip.family === 6)?.address : undefined;
  const internal6 = podAddress6 !== undefined ? options.internal6 : undefined;
  if (podAddress6 !== undefined && internal6 && inside(internal6, podAddress6)) {
    throw new FailedPreconditionError(`the pod IP ${podAddress6} is inside the masquerade IPv6 CIDR ${internal6.cidr}; choose another --masquerade-ipv6-cidr`);
  }
  const names = ctx.prewired ?? interfaceNames(ctx.sandboxId, ctx.index);
  if (!ctx.prewired) {
    const leftovers = snapshot.links.filter((l) => l.name === names.bridge || l.name === names.tap).map((l) => l.name);
    if (leftovers.length > 0) throw new FailedPreconditionError(`${leftovers.join(' and ')} already exist in ${ctx.netnsName}; unwire first`);
  }
  const queues = options.queues ?? 1;
  // The VM's NIC keeps the pod's MAC (as with the tap binding): nothing bridges it to the veth, so
  // the two never meet on one segment, and the VM's identity does not depend on the binding.
  const vmMac = link.mac;
  const bridgeMac = bridgeMacFor(ctx.sandboxId, ctx.index, [vmMac, link.mac]);
  // The default network's interface carries the VM's default routes; another network's (a
  // secondary one) only CNI's other routes of it, through the internal gateway (joinAttachmentViews
  // already took its default routes away), as the tap binding gives a secondary network.
  const routesOf = (family: 4 | 6, gateway: string): VmInterface['routes'] =>
    request.secondary
      ? ctx.cniInterface.routes.filter((r) => (r.destination.includes(':') ? 6 : 4) === family).map((r) => ({ destination: r.destination, gateway }))
      : [{ destination: family === 4 ? '0.0.0.0/0' : '::/0', gateway }];
  const vmIp = (family: 4 | 6, net: MasqueradeInternalNetwork) => ({
    family,
    address: net.vm,
    prefixLength: net.prefixLength,
    ...(request.secondary ? {} : { gateway: net.gateway }),
  });
  const vm: VmInterface = {
    name: ifname,
    mac: vmMac,
    mtu: link.mtu,
    ips: [vmIp(4, internal), ...(internal6 ? [vmIp(6, internal6)] : [])],
    routes: [...routesOf(4, internal.gateway), ...(internal6 ? routesOf(6, internal6.gateway) : [])],
    // To the VM it is a TAP on a bridge, as with the tap binding: QEMU and DHCP treat it alike.
    binding: { kind: 'tap', tap: names.tap, bridge: names.bridge },
  };
  const tap: MasqueradeWiredInterface['tap'] = { name: names.tap, multiQueue: queues > 1 };
  if (options.tapOwner?.uid !== undefined) tap.uid = options.tapOwner.uid;
  if (options.tapOwner?.gid !== undefined) tap.gid = options.tapOwner.gid;
  return {
    kind: 'masquerade',
    version: 1,
    vm,
    uplink: { name: ifname, podAddress, ...(link.addrGenMode !== undefined ? { ipv6: true } : {}) },
    bridge: { name: names.bridge, mac: bridgeMac },
    tap,
    linkGroup: linkGroupFor(ctx.index),
    internal: { ...internal },
    ...(podAddress6 !== undefined && internal6
      ? { ipv6: { podAddress: podAddress6, internal: { ...internal6 }, bridgeLinkLocal: linkLocalFromMac(bridgeMac) } }
      : {}),
    ports: request.ports.map((p) => ({ ...p })),
    table: masqueradeTableName(options.ownerId, names.bridge),
    sysctlsBefore: { ...options.sysctlsBefore },
    ...(ctx.prewired ? { prewired: true as const } : {}),
  };
}

/** The `ip -batch` that wires a plan: bridge with the internal gateway, TAP on it; the veth is not touched. Pure. */
export function masqueradeWireCommands(state: MasqueradeWiredInterface): IpCommand[] {
  const { bridge, tap, internal } = state;
  const mtu = String(state.vm.mtu);
  const group = String(state.linkGroup);
  const owner = [...(tap.uid !== undefined ? ['user', String(tap.uid)] : []), ...(tap.gid !== undefined ? ['group', String(tap.gid)] : [])];
  const noLinkLocal = (dev: string): IpCommand[] => (state.uplink.ipv6 ? [['link', 'set', 'dev', dev, 'addrgenmode', 'none']] : []);
  return [
    state.prewired
      ? ['link', 'set', 'dev', bridge.name, 'group', group, 'address', bridge.mac, 'mtu', mtu]
      : ['link', 'add', 'name', bridge.name, 'group', group, 'address', bridge.mac, 'mtu', mtu, 'type', 'bridge', 'ageing_time', '0', 'mcast_snooping', '0', 'stp_state', '0'],
    ...noLinkLocal(bridge.name),
    ...(state.prewired ? [] : [['tuntap', 'add', 'dev', tap.name, 'mode', 'tap', 'vnet_hdr', ...(tap.multiQueue ? ['multi_queue'] : []), ...owner]]),
    ...noLinkLocal(tap.name),
    ['link', 'set', 'dev', tap.name, 'group', group, 'mtu', mtu, 'master', bridge.name, 'up'],
    ['link', 'set', 'dev', bridge.name, 'up'],
    ['address', 'replace', `${internal.gateway}/${internal.prefixLength}`, 'dev', bridge.name],
    // The DHCP server id, as on a tap binding's bridge (renewals at T1 reach it through the gateway).
    ['address', 'replace', `${DHCP_SERVER_ADDRESS}/32`, 'dev', bridge.name, 'scope', 'link'],
    ['route', 'replace', '255.255.255.255/32', 'dev', bridge.name],
    ['neigh', 'replace', internal.vm, 'lladdr', state.vm.mac, 'dev', bridge.name, 'nud', 'permanent'],
    ...(state.ipv6
      ? ([
          // The VM's IPv6 router: router advertisements and DHCPv6 go out from the link-local
          // address (explicit, no DAD: the bridge has addrgenmode none), the gateway is the VM's next hop.
          ['address', 'replace', `${state.ipv6.bridgeLinkLocal}/64`, 'dev', bridge.name, 'scope', 'link', 'nodad'],
          ['address', 'replace', `${state.ipv6.internal.gateway}/${state.ipv6.internal.prefixLength}`, 'dev', bridge.name, 'nodad'],
          ['neigh', 'replace', state.ipv6.internal.vm, 'lladdr', state.vm.mac, 'dev', bridge.name, 'nud', 'permanent'],
        ] satisfies IpCommand[])
      : []),
  ];
}

/** The `ip -batch` that undoes `state` given the links that exist now: bridge and TAP go (their addresses and routes with them). Pure. */
export function masqueradeUnwireCommands(state: MasqueradeWiredInterface, links: readonly LinkState[]): IpCommand[] {
  const ours = links.filter((l) => (l.name === state.tap.name && l.kind === 'tun') || (l.name === state.bridge.name && l.kind === 'bridge'));
  const grouped = links.filter((l) => l.group === state.linkGroup);
  const byGroup = grouped.length > 0 && grouped.every((l) => ours.includes(l));
  const cmds: IpCommand[] = byGroup ? [['link', 'delete', 'group', String(state.linkGroup)]] : [];
  for (const link of ours) if (!(byGroup && link.group === state.linkGroup)) cmds.push(['link', 'delete', 'dev', link.name]);
  return cmds;
}

function portMatches(ports: readonly MasqueradePort[]): string[] {
  if (ports.length === 0) return [''];
  const byProtocol = new Map<string, number[]>();
  for (const p of ports) byProtocol.set(p.protocol, [...(byProtocol.get(p.protocol) ?? []), p.port]);
  return [...byProtocol].map(([protocol, list]) => `${protocol} dport ${list.length === 1 ? list[0] : `{ ${list.join(', ')} }`} `);
}

/** What one family's NAT table translates (the `ip` table: IPv4; the `ip6` table: IPv6). */
interface FamilyNat {
  family: 'ip' | 'ip6';
  pod: string;
  internal: MasqueradeInternalNetwork;
  /** The DHCP server port of the family (67, 547), kept off the veth. */
  dhcpServerPort: number;
}

function familiesOf(state: MasqueradeWiredInterface): FamilyNat[] {
  return [
    { family: 'ip', pod: state.uplink.podAddress, internal: state.internal, dhcpServerPort: 67 },
    ...(state.ipv6 ? [{ family: 'ip6' as const, pod: state.ipv6.podAddress, internal: state.ipv6.internal, dhcpServerPort: 547 }] : []),
  ];
}

function familyTable(state: MasqueradeWiredInterface, nat: FamilyNat, inbound: readonly string[]): string[] {
  const { table, uplink, bridge } = state;
  const { family, pod, internal } = nat;
  const dhcp = family === 'ip' ? 'dhcp' : 'dhcp6';
  return [
    `add table ${family} ${table}`,
    `flush table ${family} ${table}`,
    `table ${family} ${table} {`,
    '\tchain prerouting {',
    '\t\ttype nat hook prerouting priority dstnat; policy accept;',
    // From the pod network and from the VM itself (hairpin): the pod IP's ports are the VM's.
    ...inbound.map((match) => `\t\t${family} daddr ${pod} ${match}counter dnat to ${internal.vm} comment "inbound"`),
    '\t}',
    '\tchain output {',
    '\t\ttype nat hook output priority -100; policy accept;',
    // The netns's own processes reaching the pod IP reach the VM too.
    ...inbound.map((match) => `\t\t${family} daddr ${pod} ${match}counter dnat to ${internal.vm} comment "inbound-from-netns"`),
    '\t}',
    '\tchain postrouting {',
    '\t\ttype nat hook postrouting priority srcnat; policy accept;',
    `\t\toifname "${uplink.name}" ${family} saddr ${internal.cidr} counter snat to ${pod} comment "outbound"`,
    // The VM reaching itself through the pod IP: its reply must come back through the netns.
    `\t\toifname "${bridge.name}" ${family} saddr ${internal.vm} ${family} daddr ${internal.vm} counter snat to ${internal.gateway} comment "hairpin"`,
    '\t}',
    '\tchain forward {',
    '\t\ttype filter hook forward priority filter; policy accept;',
    `\t\tiifname "${uplink.name}" oifname "${bridge.name}" ct state new ct status & dnat == 0 counter drop comment "not-translated"`,
    `\t\tiifname "${bridge.name}" oifname "${uplink.name}" ${family} saddr != ${internal.cidr} counter drop comment "foreign-source"`,
    '\t}',
    '\tchain input {',
    '\t\ttype filter hook input priority filter; policy accept;',
    `\t\tiifname "${uplink.name}" udp dport ${nat.dhcpServerPort} counter drop comment "${dhcp}-from-uplink"`,
    '\t}',
    '\tchain output-filter {',
    '\t\ttype filter hook output priority filter; policy accept;',
    `\t\toifname "${uplink.name}" udp sport ${nat.dhcpServerPort} counter drop comment "${dhcp}-to-uplink"`,
    '\t}',
    '}',
  ];
}

/**
 * The nft script that installs (or replaces) the NAT tables of `state` (the `ip` table, and the
 * `ip6` table of the same name when the interface has IPv6), as one transaction (add + flush +
 * rules, as isolation.ts does). Rule comments name what each rule is for. Pure.
 */
export function masqueradeScript(state: MasqueradeWiredInterface): string {
  const inbound = portMatches(state.ports);
  return `${familiesOf(state).flatMap((nat) => familyTable(state, nat, inbound)).join('\n')}\n`;
}

/** The nft script that removes the tables of `state`, and succeeds when they are already gone. */
export function masqueradeRemovalScript(state: Pick<MasqueradeWiredInterface, 'table' | 'ipv6'>): string {
  const families = ['ip', ...(state.ipv6 ? ['ip6'] : [])];
  return families.map((f) => `add table ${f} ${state.table}\ndelete table ${f} ${state.table}\n`).join('');
}

/**
 * The sysctls the wiring sets: forwarding on (IPv6's too when the interface has IPv6), no ICMP
 * redirects (a hairpin leaves by the port it came in).
 */
export function masqueradeSysctls(bridge: string, ipv6 = false): Record<string, string> {
  return {
    'net.ipv4.conf.all.forwarding': '1',
    'net.ipv4.conf.all.send_redirects': '0',
    [`net.ipv4.conf.${bridge}.send_redirects`]: '0',
    ...(ipv6 ? { 'net.ipv6.conf.all.forwarding': '1' } : {}),
  };
}
