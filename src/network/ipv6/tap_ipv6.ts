/**
 * The IPv6 part of the tap binding (bindings/tap.ts), for an interface CNI gave IPv6 addresses:
 * the VM takes the addresses over with its MAC (as it does IPv4's) and learns them from vmlet's
 * DHCPv6 server on the pod bridge; the bridge advertises itself as the VM's IPv6 router.
 *
 * The router: a router advertisement's source address is the next hop of every route it gives,
 * so the VM's default route points at the bridge's link-local address. The pod netns therefore
 * forwards IPv6 (net.ipv6.conf.all.forwarding, set back on unwiring) and routes what the VM sends
 * it to CNI's gateway on the far side of the veth, out through the same bridge; the kernel also
 * sends the VM a redirect to that gateway, so later packets of a flow go there directly. Traffic
 * to the VM needs none of this: the pod network reaches the VM's address on the link, as it
 * reached the veth's.
 *
 * The bridge's link-local address is explicit (EUI-64 of its MAC, no DAD), so it exists at once
 * and stays the same across netd restarts; the bridge otherwise has no IPv6 presence
 * (addrgenmode none). Pure.
 */
import { isIPv6 } from 'node:net';
import type { TapIpv6State } from '../bindings/types.js';
import type { IpCommand } from '../iproute.js';
import type { VmInterface } from '../types.js';
import { ipv6Prefix, linkLocalFromMac } from './address.js';

/** Netns-wide sysctls the IPv6 router needs (read before wiring, set back after). */
export const IPV6_NETNS_SYSCTLS = ['net.ipv6.conf.all.forwarding'] as const;

export function hasIpv6(vm: VmInterface): boolean {
  return vm.ips.some((ip) => ip.family === 6);
}

/** CNI's IPv6 gateway for the interface: the first IPv6 address's, else the one of a ::/0 route. */
export function ipv6Gateway(vm: VmInterface): string | undefined {
  const fromIp = vm.ips.find((ip) => ip.family === 6 && ip.gateway !== undefined)?.gateway;
  if (fromIp) return fromIp;
  return vm.routes.find((r) => r.destination === '::/0' && r.gateway !== undefined && isIPv6(r.gateway))?.gateway;
}

export function tapIpv6State(bridgeMac: string, sysctlsBefore: Record<string, string>): TapIpv6State {
  return { bridgeLinkLocal: linkLocalFromMac(bridgeMac), sysctlsBefore: { ...sysctlsBefore } };
}

/** The sysctls the wiring sets. */
export function ipv6RouterSysctls(): Record<string, string> {
  return { 'net.ipv6.conf.all.forwarding': '1' };
}

/**
 * The `ip -batch` lines that make the bridge the VM's IPv6 router: its link-local address, the
 * VM's prefixes on the bridge, and CNI's IPv6 routes through the gateway on the bridge. Pure.
 */
export function tapIpv6WireCommands(vm: VmInterface, bridge: string, state: TapIpv6State): IpCommand[] {
  const cmds: IpCommand[] = [['address', 'replace', `${state.bridgeLinkLocal}/64`, 'dev', bridge, 'scope', 'link', 'nodad']];
  const prefixes = new Set(vm.ips.filter((ip) => ip.family === 6).map((ip) => `${ipv6Prefix(ip.address, ip.prefixLength)}/${ip.prefixLength}`));
  for (const prefix of prefixes) cmds.push(['route', 'replace', prefix, 'dev', bridge]);
  const gateway = ipv6Gateway(vm);
  if (gateway) {
    cmds.push(['route', 'replace', '::/0', 'via', gateway, 'dev', bridge]);
    for (const route of vm.routes) {
      const [dst] = route.destination.split('/');
      if (!isIPv6(dst!) || route.destination === '::/0') continue;
      cmds.push(['route', 'replace', route.destination, 'via', route.gateway && isIPv6(route.gateway) ? route.gateway : gateway, 'dev', bridge]);
    }
  }
  return cmds;
}
