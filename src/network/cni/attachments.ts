/**
 * A sandbox attached to several CNI networks: the results of each ADD joined into the one view
 * the VM side reads, and the Multus-shaped `network-status` reported for them. Pure.
 */
import { FailedPreconditionError } from '../../errors.js';
import type { DnsConfig } from '../types.js';
import type { MasqueradeRequest } from '../bindings/types.js';
import type { VmNetworkView } from './result.js';

/** One network the sandbox was attached to, as netd records it (in ADD order). */
export interface AttachmentRecord {
  /** The conflist's name: the CNI cache key DEL uses. */
  network: string;
  /** The namespace the Multus annotation gave, for the reported name. */
  namespace?: string;
  ifName: string;
  isDefault: boolean;
  /** Set once ADD succeeded: the sandbox interfaces its result gave, and its DNS. */
  interfaces?: string[];
  dns?: DnsConfig;
  /**
   * The Multus JSON element asked for the masquerade binding of this network's interfaces
   * (with the pod's declared ports); the default network's comes from the pod annotation instead.
   */
  masquerade?: MasqueradeRequest;
}

const DEFAULT_ROUTES = new Set(['0.0.0.0/0', '::/0']);

/**
 * Joins each attachment's view (in ADD order) into one. Only the default network keeps its
 * gateways and default routes: the VM has one default route, through the first network, as
 * Virtlet and Multus give a pod; the other networks keep their specific routes. DNS comes from
 * the default network. Two networks giving the sandbox interfaces of one name is an error.
 */
export function joinAttachmentViews(parts: readonly { view: VmNetworkView; isDefault: boolean }[]): VmNetworkView {
  const joined: VmNetworkView = { interfaces: [], dns: { nameservers: [], search: [], options: [] }, unassigned: { ips: [], routes: [] } };
  for (const { view, isDefault } of parts) {
    for (const iface of view.interfaces) {
      if (joined.interfaces.some((i) => i.name === iface.name)) {
        throw new FailedPreconditionError(`two networks gave the sandbox an interface named ${iface.name}`);
      }
      joined.interfaces.push(
        isDefault
          ? iface
          : {
              ...iface,
              ips: iface.ips.map(({ gateway: _gateway, ...ip }) => ip),
              routes: iface.routes.filter((r) => !DEFAULT_ROUTES.has(r.destination)),
            },
      );
    }
    if (isDefault) joined.dns = view.dns;
    joined.unassigned.ips.push(...view.unassigned.ips);
    joined.unassigned.routes.push(...view.unassigned.routes);
  }
  return joined;
}

/** One entry of Multus's `k8s.v1.cni.cncf.io/network-status`. */
export interface NetworkStatusEntry {
  name: string;
  interface: string;
  ips: string[];
  mac: string;
  default: boolean;
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
}

/**
 * The network-status of a sandbox: one entry per sandbox interface an attachment gave, named as
 * the annotation named the network (`namespace/name` when it gave a namespace), with the MAC the
 * VM's NIC carries (the one CNI gave the interface) and its addresses without prefix.
 */
export function networkStatusOf(attachments: readonly AttachmentRecord[], cni: VmNetworkView): NetworkStatusEntry[] {
  const entries: NetworkStatusEntry[] = [];
  for (const a of attachments) {
    for (const name of a.interfaces ?? []) {
      const iface = cni.interfaces.find((i) => i.name === name);
      if (!iface) continue;
      const entry: NetworkStatusEntry = {
        name: a.namespace !== undefined ? `${a.namespace}/${a.network}` : a.network,
        interface: iface.name,
        ips: iface.ips.map((ip) => ip.address),
        mac: iface.mac,
        default: a.isDefault,
      };
      const dns = a.dns;
      if (dns && (dns.nameservers.length > 0 || dns.search.length > 0 || dns.options.length > 0 || dns.domain !== undefined)) {
        entry.dns = {
          ...(dns.nameservers.length > 0 ? { nameservers: dns.nameservers } : {}),
          ...(dns.domain !== undefined ? { domain: dns.domain } : {}),
          ...(dns.search.length > 0 ? { search: dns.search } : {}),
          ...(dns.options.length > 0 ? { options: dns.options } : {}),
        };
      }
      entries.push(entry);
    }
  }
  return entries;
}
