/**
 * The capability args (CNI conventions: portMappings, dns) vmlet hands the plugins of a pod's
 * network: what the pod asks for, in the shape the plugins that declare the capability expect.
 * Pure.
 */
import type { PodDnsConfig, PortMapping } from '../types.js';
import type { CapabilityArgs } from './invocation.js';
import { NETWORK_ANNOTATIONS } from './pod_networks.js';

export interface PodCapabilityRequest {
  portMappings: readonly PortMapping[];
  dns: PodDnsConfig;
}

export function capabilityArgs(pod: PodCapabilityRequest): CapabilityArgs {
  const args: Record<string, unknown> = {
    // Only mappings that publish a host port, as containerd passes them: portmap refuses host port 0.
    portMappings: pod.portMappings
      .filter((p) => p.hostPort > 0)
      .map((p) => ({ hostPort: p.hostPort, containerPort: p.containerPort, protocol: p.protocol, hostIP: p.hostIP })),
  };
  if (pod.dns.servers.length > 0 || pod.dns.searches.length > 0) {
    args.dns = { servers: pod.dns.servers, searches: pod.dns.searches, options: pod.dns.options };
  }
  return args;
}

/** The pod annotations netd reads: the networks a pod asks for (pod_networks.ts). */
export const NETD_ANNOTATIONS: readonly string[] = [...NETWORK_ANNOTATIONS];
