/**
 * The capability args (CNI conventions: portMappings, dns, bandwidth, ipRanges) vmlet hands the plugins of a
 * pod's network: what the pod asks for, in the shape the plugins that declare the capability
 * expect, as containerd's CRI plugin builds them. Pure.
 */
import { InvalidArgumentError } from '../../errors.js';
import type { PodDnsConfig, PortMapping } from '../types.js';
import type { CapabilityArgs } from './invocation.js';
import { NETWORK_ANNOTATIONS } from './pod_networks.js';
import { NETWORK_BINDING_ANNOTATION } from '../bindings/masquerade_plan.js';

export interface PodCapabilityRequest {
  portMappings: readonly PortMapping[];
  dns: PodDnsConfig;
  /** The pod's annotations netd gets (bandwidth ones read here). */
  annotations?: Readonly<Record<string, string>>;
  /** The node's pod CIDRs (UpdateRuntimeConfig): one `ipRanges` range set each, for host-local. */
  podCidrs?: readonly string[];
}

export const INGRESS_BANDWIDTH_ANNOTATION = 'kubernetes.io/ingress-bandwidth';
export const EGRESS_BANDWIDTH_ANNOTATION = 'kubernetes.io/egress-bandwidth';
/** containerd sets the bursts to MaxUint32 so that only the rate limits. */
const UNLIMITED_BURST = 0xffffffff;
const DECIMAL: Record<string, number> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };
const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
/** kubelet's bounds for a pod bandwidth (validateBandwidthIsReasonable): 1k to 1P bits/s. */
const MIN_BANDWIDTH = 1e3;
const MAX_BANDWIDTH = 1e15;

/**
 * A bandwidth annotation (a Kubernetes quantity: `10M`, `1Gi`, `500k`, `2.5M`) in bits per second,
 * rounded up as Quantity.Value() does; out of kubelet's 1k..1P bounds or not a quantity is refused.
 */
export function parseBandwidth(annotation: string, text: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)(k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`annotation ${annotation}: ${JSON.stringify(text)} is not a quantity such as 10M or 1Gi`);
  const unit = m[2] ?? '';
  const value = Math.ceil(Number(m[1]) * (DECIMAL[unit] ?? BINARY[unit]!));
  if (value < MIN_BANDWIDTH) throw new InvalidArgumentError(`annotation ${annotation}: ${text} is unreasonably small (< 1kbit)`);
  if (value > MAX_BANDWIDTH) throw new InvalidArgumentError(`annotation ${annotation}: ${text} is unreasonably large (> 1Pbit)`);
  return value;
}

/** The `bandwidth` capability from the pod's annotations, or undefined when it sets neither. */
export function bandwidthArgs(annotations: Readonly<Record<string, string>>): Record<string, number> | undefined {
  const ingress = annotations[INGRESS_BANDWIDTH_ANNOTATION];
  const egress = annotations[EGRESS_BANDWIDTH_ANNOTATION];
  if (ingress === undefined && egress === undefined) return undefined;
  const out: Record<string, number> = {};
  if (ingress !== undefined) {
    out.ingressRate = parseBandwidth(INGRESS_BANDWIDTH_ANNOTATION, ingress);
    out.ingressBurst = UNLIMITED_BURST;
  }
  if (egress !== undefined) {
    out.egressRate = parseBandwidth(EGRESS_BANDWIDTH_ANNOTATION, egress);
    out.egressBurst = UNLIMITED_BURST;
  }
  return out;
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
  const bandwidth = bandwidthArgs(pod.annotations ?? {});
  if (bandwidth) args.bandwidth = bandwidth;
  // One range set per CIDR, so a dual-stack node gives host-local one address of each family.
  if (pod.podCidrs && pod.podCidrs.length > 0) args.ipRanges = pod.podCidrs.map((subnet) => [{ subnet }]);
  return args;
}

/**
 * The pod annotations netd reads: the networks a pod asks for (pod_networks.ts), its bandwidth,
 * the binding of its default interface (bindings/masquerade_plan.ts).
 */
export const NETD_ANNOTATIONS: readonly string[] = [...NETWORK_ANNOTATIONS, INGRESS_BANDWIDTH_ANNOTATION, EGRESS_BANDWIDTH_ANNOTATION, NETWORK_BINDING_ANNOTATION];
