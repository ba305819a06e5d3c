/**
 * What IPv6 service each pod bridge gets, from the wired interfaces and the VM's DNS: a DHCPv6
 * lease for the VM's IPv6 address (the first of its interface) and the router advertisement that
 * goes with it. Only tap-bound and masqueraded interfaces with an IPv6 address get one. Pure.
 *
 * The advertisement: managed and other-config flags (address and DNS from DHCPv6), each IPv6
 * address's prefix on-link without the autonomous flag (no SLAAC: the VM must use CNI's
 * address), RDNSS/DNSSL for clients that read DNS from advertisements, and the bridge as default
 * router when CNI gave the interface an IPv6 gateway or default route (the tap binding then makes
 * the pod netns forward to that gateway; see tap_ipv6.ts). CNI's other IPv6 routes become route
 * information options through the bridge.
 *
 * A masqueraded interface with IPv6 (bindings/masquerade_plan.ts) gets the same service for its
 * internal address: the lease is the VM's internal IPv6 address, the prefix the internal CIDR,
 * the bridge (holding the internal gateway) the router.
 */
import type { WiredInterface } from '../bindings/types.js';
import type { DnsConfig, VmInterface } from '../types.js';
import { isIPv6 } from 'node:net';
import { ipv6Prefix } from './address.js';
import { duidLl } from './dhcp6_packet.js';
import type { Dhcp6Lease } from './dhcp6_policy.js';
import type { RouterAdvert } from './router_advert.js';
import { ipv6Gateway } from './tap_ipv6.js';

export const IPV6_LEASE_SECONDS = 86_400;
/** Router lifetime of the bridge: the maximum RFC 4861 allows; advertisements repeat well within it. */
export const ROUTER_LIFETIME_SECONDS = 1800;

export interface BridgeIpv6Service {
  bridge: string;
  lease: Dhcp6Lease;
  serverDuid: Buffer;
  advert: RouterAdvert;
}

export function ipv6ServicesFor(interfaces: readonly WiredInterface[], dns: DnsConfig): BridgeIpv6Service[] {
  const out: BridgeIpv6Service[] = [];
  for (const state of interfaces) {
    // A masqueraded interface's VM has IPv6 only when its NAT66 was planned; its vm.ips say so.
    if (state.kind !== 'tap' && state.kind !== 'masquerade') continue;
    const service = serviceOf(state.vm, state.bridge, dns);
    if (service) out.push(service);
  }
  return out;
}

function serviceOf(vm: VmInterface, bridge: { name: string; mac: string }, dns: DnsConfig): BridgeIpv6Service | undefined {
  const ips = vm.ips.filter((ip) => ip.family === 6);
  const first = ips[0];
  if (!first) return undefined;
  const servers = dns.nameservers.filter((n) => isIPv6(n));
  const search = [...dns.search];
  const gateway = ipv6Gateway(vm);
  const otherRoutes = vm.routes.filter((r) => isIPv6(r.destination.split('/')[0]!) && r.destination !== '::/0');
  return {
    bridge: bridge.name,
    // DUID-LL of the bridge's MAC: the same for as long as the bridge exists, across netd restarts.
    serverDuid: duidLl(bridge.mac),
    lease: { address: first.address, prefixLength: first.prefixLength, dns: servers, search, leaseSeconds: IPV6_LEASE_SECONDS },
    advert: {
      curHopLimit: 64,
      managed: true,
      other: true,
      routerLifetime: gateway ? ROUTER_LIFETIME_SECONDS : 0,
      reachableTime: 0,
      retransTimer: 0,
      sourceMac: bridge.mac,
      mtu: vm.mtu,
      prefixes: ips.map((ip) => ({
        prefix: ipv6Prefix(ip.address, ip.prefixLength),
        length: ip.prefixLength,
        onLink: true,
        autonomous: false,
        validLifetime: IPV6_LEASE_SECONDS,
        preferredLifetime: IPV6_LEASE_SECONDS,
      })),
      routes: gateway
        ? otherRoutes.map((r) => ({ prefix: r.destination.split('/')[0]!, length: Number(r.destination.split('/')[1]), lifetime: ROUTER_LIFETIME_SECONDS }))
        : [],
      ...(servers.length > 0 ? { dns: { lifetime: ROUTER_LIFETIME_SECONDS, servers } } : {}),
      ...(search.length > 0 ? { search: { lifetime: ROUTER_LIFETIME_SECONDS, names: search } } : {}),
    },
  };
}
