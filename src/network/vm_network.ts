/**
 * The VM's whole network description (types.ts VmNetwork), composed from the wired interfaces,
 * the pod spec and CNI's answer. Pure.
 */
import type { DnsConfig, PodDnsConfig, VmInterface, VmNetwork } from './types.js';
import type { MasqueradeRequest } from './bindings/types.js';

/** What the VM side needs from the pod spec besides CNI's answer. */
export interface PodNetworkSpec {
  hostname: string;
  dns: PodDnsConfig;
  /** The pod asked for the masquerade binding of its default interface (bindings/masquerade_plan.ts). */
  masquerade?: MasqueradeRequest;
}

/** The pod's DNSConfig wins; the CNI result fills in when the pod gave none. */
export function podDns(pod: PodDnsConfig, cni: DnsConfig): DnsConfig {
  if (pod.servers.length > 0 || pod.searches.length > 0) {
    return { nameservers: pod.servers, search: pod.searches, options: pod.options, ...(cni.domain ? { domain: cni.domain } : {}) };
  }
  return cni;
}

export function vmNetworkOf(interfaces: VmInterface[], pod: PodNetworkSpec, cniDns: DnsConfig): VmNetwork {
  return { interfaces, dns: podDns(pod.dns, cniDns), ...(pod.hostname ? { hostname: pod.hostname } : {}) };
}
