/**
 * Calico's result, made something DHCP can give a VM (the way Virtlet does it). Calico gives the
 * pod a /32 and a gateway, 169.254.1.1, that no subnet holds: the pod reaches it only through a
 * link-scope route and the host's proxy ARP. DHCP has no way to say "this gateway is on-link
 * though outside your subnet", so the VM gets instead:
 *   - its address with the prefix of `--calico-subnet` (the pod IP's /N network), and
 *   - a fake gateway inside that /N (FAKE GATEWAY RULE below), an address on the VM's bridge.
 * The pod netns then routes what the VM sends its fake gateway the way Calico meant: through
 * 169.254.1.1 on the CNI veth (the veth's own routes, re-created on the bridge, which is now the
 * L3 device of the netns), with forwarding on and ICMP redirects off. The netns ARPs for
 * 169.254.1.1 with the pod IP as sender (an `arp` table rewrites it): the host side of a Calico
 * veth filters by reverse path, and the bridge's own addresses are not routed to this pod there.
 * ARP for the fake gateway never crosses the veth (isolation.ts), so only the bridge answers it.
 *
 * FAKE GATEWAY RULE: the last host address of the /N (x.y.z.254 for a /24), or the one below it
 * when that is the pod IP itself. It is not asked of Calico's IPAM: keep it out of the pool
 * (a Calico IPReservation of that address per /N); a pod that was given it anyway stays reachable
 * from everywhere except from VMs of that /N, which take it for their gateway. Pure.
 */
import { InvalidArgumentError } from '../../errors.js';
import type { IpCommand } from '../iproute.js';
import type { IpConfig, RouteConfig } from '../types.js';
import { parseIp } from '../cni/ip.js';
import type { CniInterfaceView, CalicoGateway } from './types.js';
import { routeRestoreCommand, routeRestoreOrder, type RecordedRoute } from './snapshot.js';

/** What the tap binding records of a Calico-shaped interface (TapWiredInterface.calico). */
export type { CalicoGateway };

/** Default of --calico-subnet, as Virtlet's `calico-subnet`. */
export const DEFAULT_CALICO_SUBNET = 24;

/** Netns-wide sysctls the gateway needs (read before wiring, set back after). */
export const CALICO_NETNS_SYSCTLS = ['net.ipv4.conf.all.forwarding', 'net.ipv4.conf.all.send_redirects'] as const;

function v4ToText(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
}

/**
 * Calico's link-scope gateway of an interface, when its result has Calico's shape: an IPv4 /32
 * with a gateway (on the address or as a default route's). Undefined otherwise (any other result
 * is given to the VM as it is).
 */
export function calicoGatewayOf(iface: CniInterfaceView): { address: IpConfig; gateway: string } | undefined {
  for (const ip of iface.ips) {
    if (ip.family !== 4 || ip.prefixLength !== 32) continue;
    const gateway = ip.gateway ?? iface.routes.find((r) => r.destination === '0.0.0.0/0' && r.gateway !== undefined)?.gateway;
    if (gateway !== undefined && gateway !== ip.address && parseIp(gateway)?.family === 4) return { address: ip, gateway };
  }
  return undefined;
}

/** The fake gateway of the rule above for `podAddress` in its /`prefixLength`. */
export function fakeGatewayFor(podAddress: string, prefixLength: number): string {
  if (!Number.isInteger(prefixLength) || prefixLength < 8 || prefixLength > 30) {
    throw new InvalidArgumentError(`calico subnet /${prefixLength} must be between /8 and /30`);
  }
  const pod = parseIp(podAddress);
  if (pod?.family !== 4) throw new InvalidArgumentError(`${podAddress} is not an IPv4 address`);
  const hostBits = BigInt(32 - prefixLength);
  const broadcast = ((pod.value >> hostBits) << hostBits) | ((1n << hostBits) - 1n);
  const last = broadcast - 1n;
  return v4ToText(last === pod.value ? last - 1n : last);
}

/** The VM's view of a Calico-shaped interface: the /N address, the fake gateway in place of Calico's. */
export function calicoVmView(iface: CniInterfaceView, gw: Pick<CalicoGateway, 'podAddress' | 'podGateway' | 'fakeGateway' | 'prefixLength'>): { ips: IpConfig[]; routes: RouteConfig[] } {
  const ips = iface.ips.map((ip): IpConfig =>
    ip.family === 4 && ip.address === gw.podAddress ? { family: 4, address: ip.address, prefixLength: gw.prefixLength, gateway: gw.fakeGateway } : { ...ip },
  );
  const routes = iface.routes
    // The route to Calico's gateway itself means nothing to the VM.
    .filter((r) => r.destination !== `${gw.podGateway}/32`)
    .map((r): RouteConfig => (r.gateway === gw.podGateway ? { destination: r.destination, gateway: gw.fakeGateway } : { ...r }));
  return { ips, routes };
}

/**
 * The `ip -batch` that makes the bridge the gateway (after the tap wiring): the fake gateway on
 * it, and the veth's routes (Calico's: 169.254.1.1 scope link, default via it) re-created on it.
 * A preferred source would be the pod IP, which is the VM's now: dropped. Pure.
 */
export function calicoWireCommands(gw: CalicoGateway, bridge: string, uplinkRoutes: readonly RecordedRoute[]): IpCommand[] {
  return [
    ['address', 'replace', `${gw.fakeGateway}/32`, 'dev', bridge, 'scope', 'global'],
    ...routeRestoreOrder(uplinkRoutes.filter((r) => r.family === 4)).map((r) => {
      const { prefsrc: _src, ...route } = r;
      return routeRestoreCommand(route, bridge);
    }),
  ];
}

/** The sysctls the wiring sets: forwarding on, no ICMP redirects (the VM's packets leave by the port they came in). */
export function calicoSysctls(bridge: string): Record<string, string> {
  return {
    'net.ipv4.conf.all.forwarding': '1',
    'net.ipv4.conf.all.send_redirects': '0',
    [`net.ipv4.conf.${bridge}.send_redirects`]: '0',
  };
}

export function calicoArpTableName(bridge: string): string {
  return `vmlet-calico-${bridge}`;
}

/** The nft script that makes the netns ask for Calico's gateway as the pod IP. Pure. */
export function calicoArpScript(gw: CalicoGateway, bridge: string): string {
  const table = calicoArpTableName(bridge);
  return [
    `add table arp ${table}`,
    `flush table arp ${table}`,
    `table arp ${table} {`,
    '\tchain output {',
    '\t\ttype filter hook output priority filter; policy accept;',
    `\t\toifname "${bridge}" arp operation request arp daddr ip ${gw.podGateway} arp saddr ip set ${gw.podAddress} counter comment "calico-arp-source"`,
    '\t}',
    '}',
    '',
  ].join('\n');
}

export function calicoArpRemovalScript(bridge: string): string {
  const table = calicoArpTableName(bridge);
  return `add table arp ${table}\ndelete table arp ${table}\n`;
}
