/**
 * The source address of port-forward connections made inside a pod netns.
 *
 * The VM owns the pod IP, so after the VM side is wired the pod netns has no IPv4 address of its
 * own: a socket there connecting to the VM would send its SYN from 0.0.0.0 and never hear back.
 * vmlet gives every pod bridge a link-local /32, PORT_FORWARD_SOURCE_IP, and connects from it.
 * The VM knows no route to that address other than its default route, so it sends its replies to
 * its gateway's MAC; one nftables bridge-family rule per TAP rewrites frames for that address to
 * the bridge's own MAC and marks them for the local stack, so they reach the socket instead of
 * leaving through the CNI veth. Nothing leaves the pod: the address is never seen outside.
 *
 * Limit: a VM without a default route (or whose default route leaves through a NIC that is not
 * vmlet's bridge) cannot answer, and the connection times out.
 *
 * The table is separate from the DHCP isolation table (isolation.ts) so that one's completeness
 * check is not disturbed; both go with the netns.
 */
import type { IpCommand } from './iproute.js';
import { assertInterfaceName } from './names.js';

/** In 169.254.0.0/16, far from 169.254.169.254 (cloud metadata) and from zeroconf's usual picks. */
export const PORT_FORWARD_SOURCE_IP = '169.254.253.253';
export const PORT_FORWARD_TABLE = 'vmlet-portforward';

export interface PodBridge {
  name: string;
  mac: string;
  /** The bridge's TAP ports (the VM side). */
  taps: string[];
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** The pod bridges and their TAPs, from `ip -j -d link show` in the pod netns. Pure. */
export function podBridges(links: unknown): PodBridge[] {
  if (!Array.isArray(links)) return [];
  const out: PodBridge[] = [];
  for (const l of links as { ifname?: unknown; address?: unknown; master?: unknown; linkinfo?: { info_kind?: unknown } }[]) {
    if (l?.linkinfo?.info_kind !== 'bridge' || typeof l.ifname !== 'string' || typeof l.address !== 'string') continue;
    const taps = (links as typeof l[])
      .filter((p) => p?.master === l.ifname && p.linkinfo?.info_kind === 'tun' && typeof p.ifname === 'string')
      .map((p) => p.ifname as string);
    out.push({ name: l.ifname, mac: l.address.toLowerCase(), taps });
  }
  return out;
}

/** `ip -batch` giving every pod bridge the source address. Pure. */
export function portForwardSourceCommands(bridges: PodBridge[]): IpCommand[] {
  return bridges.map((b) => {
    assertInterfaceName(b.name);
    return ['address', 'replace', `${PORT_FORWARD_SOURCE_IP}/32`, 'dev', b.name];
  });
}

/** The nft script (one transaction, idempotent) steering the VM's replies to the local stack. Pure. */
export function portForwardSourceScript(bridges: PodBridge[]): string {
  const t = `bridge ${PORT_FORWARD_TABLE}`;
  const lines = [`add table ${t}`, `flush table ${t}`, `table ${t} {`, '\tchain prerouting {', '\t\ttype filter hook prerouting priority dstnat; policy accept;'];
  for (const b of bridges) {
    if (!MAC.test(b.mac)) throw new RangeError(`bridge ${b.name} has no Ethernet address`);
    for (const tap of b.taps) {
      assertInterfaceName(tap);
      lines.push(`\t\tiifname "${tap}" ip daddr ${PORT_FORWARD_SOURCE_IP} ether daddr set ${b.mac} meta pkttype set host comment "portforward-reply"`);
    }
  }
  lines.push('\t}', '}');
  return `${lines.join('\n')}\n`;
}
