/**
 * The address vmlet's DHCP server answers on inside every pod netns, and names as its server id
 * (option 54). A client renews at T1 by unicast to the server id; were it the pod's gateway (as
 * before), the renewal would leave through the CNI veth, where the isolation rules drop DHCP, and
 * leases would only renew by broadcast at T2. This link-local address instead lives on each pod
 * bridge (the netns's local stack), and the bridge's nftables table hands a VM's unicast DHCP to
 * it to the local stack whatever MAC the VM addressed (its gateway's, when it routes the
 * renewal through its default route); ARP for it never crosses the CNI veth, so no pod network
 * sees it and no other pod's bridge answers for it. The same address in every pod: it never
 * leaves one. Pure constants and a lease helper.
 */
import type { RouteConfig } from '../types.js';

/** 169.254.0.0/16 (RFC 3927), never routed; "67" after the DHCP server port. */
export const DHCP_SERVER_ADDRESS = '169.254.67.67';

/**
 * The routes a lease must carry so the client reaches the server address: none when it has a
 * default route (the bridge redirects what the VM sends its gateway), else an on-link host route
 * (option 121, router 0.0.0.0), as an interface of a second network without a default route has.
 */
export function serverAddressRoutes(routes: readonly RouteConfig[], gateway: string | undefined): RouteConfig[] {
  const hasDefault = gateway !== undefined || routes.some((r) => r.destination === '0.0.0.0/0');
  if (hasDefault || routes.some((r) => r.destination === `${DHCP_SERVER_ADDRESS}/32`)) return [];
  return [{ destination: `${DHCP_SERVER_ADDRESS}/32`, gateway: '0.0.0.0' }];
}
