/** The DHCP leases vmlet's responder hands a VM, built from the VM's network description. Pure. */
import type { VmNetwork } from '../types.js';
import type { DhcpLease } from './lease_policy.js';
import { DHCP_SERVER_ADDRESS, serverAddressRoutes } from './server_address.js';

/** The default (--dhcp-lease-time): VMs renew long before this; a short-ish lease keeps a stale VM from holding on forever. */
export const LEASE_SECONDS = 86_400;

/** One DHCP lease of `leaseSeconds` per tap-bound interface with an IPv4 address. */
export function leasesFor(network: VmNetwork, leaseSeconds: number = LEASE_SECONDS): DhcpLease[] {
  const leases: DhcpLease[] = [];
  for (const iface of network.interfaces) {
    if (iface.binding.kind !== 'tap') continue;
    const ip = iface.ips.find((a) => a.family === 4);
    if (!ip) continue;
    leases.push({
      mac: iface.mac,
      ip: ip.address,
      prefixLength: ip.prefixLength,
      ...(ip.gateway ? { gateway: ip.gateway } : {}),
      routes: [...iface.routes, ...serverAddressRoutes(iface.routes, ip.gateway)],
      dns: network.dns,
      ...(network.hostname ? { hostname: network.hostname } : {}),
      mtu: iface.mtu,
      leaseSeconds,
      // An address the pod bridge answers on, so renewals at T1 reach the server (server_address.ts).
      serverId: DHCP_SERVER_ADDRESS,
    });
  }
  return leases;
}
