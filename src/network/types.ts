/**
 * The VM-facing description of a sandbox's network: what netd hands back after wiring a pod,
 * what is persisted with the sandbox, and what the domain XML, cloud-init and DHCP are built from.
 */
export interface IpConfig {
  family: 4 | 6;
  /** Address without prefix, e.g. "198.18.0.5". */
  address: string;
  prefixLength: number;
  /** Gateway the CNI result gave for this address, if any. */
  gateway?: string;
}

export interface RouteConfig {
  /** CIDR, e.g. "0.0.0.0/0". */
  destination: string;
  gateway?: string;
}

export interface DnsConfig {
  nameservers: string[];
  search: string[];
  options: string[];
  domain?: string;
}

/** How one CNI interface reaches the VM. New kinds (masquerade, …) are added to this union. */
export type InterfaceBinding =
  | { kind: 'tap'; tap: string; bridge: string }
  | { kind: 'sriov'; pciAddress: string };

export interface VmInterface {
  /** Interface name inside the pod netns as CNI created it (eth0, net1, …). */
  name: string;
  /** MAC the VM's NIC must carry: the one CNI gave the interface. */
  mac: string;
  mtu: number;
  ips: IpConfig[];
  routes: RouteConfig[];
  binding: InterfaceBinding;
}

export interface VmNetwork {
  /** In CNI result order; the VM's NICs follow this order. */
  interfaces: VmInterface[];
  dns: DnsConfig;
  hostname?: string;
}

/** The pod's DNSConfig as kubelet gives it (CRI's field names); empty when the pod sets none. */
export interface PodDnsConfig {
  servers: string[];
  searches: string[];
  options: string[];
}

/** One port mapping of the pod, as kubelet gives it. */
export interface PortMapping {
  protocol: 'tcp' | 'udp' | 'sctp';
  containerPort: number;
  hostPort: number;
  hostIP: string;
}
