/**
 * What the bindings share: the context netd hands a binding for one CNI interface, and the
 * persisted state of every binding kind (plain JSON; `kind` says which binding owns it). The
 * binding protocol is in binding.ts, each binding in a module of its own; all of them sit above this.
 */
import type { RecordedAddress, RecordedRoute } from './snapshot.js';
import type { IpConfig, RouteConfig, VmInterface } from '../types.js';

/** What CNI reported for one interface, as netd hands it to a binding. */
export interface CniInterfaceView {
  /** Name inside the pod netns (eth0, net1, …). */
  name: string;
  mac?: string;
  mtu?: number;
  /** Addresses and routes the VM should get (from the CNI result). */
  ips: IpConfig[];
  routes: RouteConfig[];
}

export interface BindingContext {
  netnsName: string;
  netnsPath: string;
  sandboxId: string;
  /** Position of the interface in the CNI result; derives device names and MACs. */
  index: number;
  cniInterface: CniInterfaceView;
  /**
   * Devices made for this interface before the sandbox existed (a warm netns, TapBinding.prewire):
   * the binding uses them instead of making its own.
   */
  prewired?: { bridge: string; tap: string };
  /** The pod asked for the masquerade binding for this interface (masquerade_plan.ts). */
  masquerade?: MasqueradeRequest;
}

/** A container port the masquerade binding forwards from the pod IP to the VM. */
export interface MasqueradePort {
  protocol: 'tcp' | 'udp' | 'sctp';
  port: number;
}

/** What a pod asks of the masquerade binding: the ports to forward (none declared: every port). */
export interface MasqueradeRequest {
  ports: MasqueradePort[];
  /**
   * The interface is not of the pod's default network (a Multus JSON element asked for it): the
   * VM gets no default route through it, only CNI's other routes of it.
   */
  secondary?: true;
}

/** An internal network of the masquerade binding: the bridge is its gateway, the VM has `vm`. */
export interface MasqueradeInternalNetwork {
  cidr: string;
  gateway: string;
  vm: string;
  prefixLength: number;
}

/** Fields every binding's persisted state carries. */
export interface WiredInterfaceBase {
  kind: string;
  /** Layout version of the state, so a newer netd can still undo an older netd's wiring. */
  version: number;
  /** The VM-facing description of this interface. */
  vm: VmInterface;
}

/** The tap binding's state (tap.ts). */
export interface TapWiredInterface extends WiredInterfaceBase {
  kind: 'tap';
  version: 1;
  /** The CNI veth inside the pod netns: what it was, and the MAC it carries while wired. */
  uplink: {
    name: string;
    originalMac: string;
    wiredMac: string;
    mtu: number;
    wasUp: boolean;
    /** Absent when IPv6 is off on the device. */
    addrGenMode?: string;
    addresses: RecordedAddress[];
    routes: RecordedRoute[];
  };
  bridge: { name: string; mac: string };
  tap: { name: string; multiQueue: boolean; uid?: number; gid?: number };
  /** Link group of bridge and TAP (see LINK_GROUP_BASE). */
  linkGroup: number;
  /** Bridge, TAP and isolation rules were made in advance (BindingContext.prewired); wiring only joins them up. */
  prewired?: true;
  /** A Calico-shaped result: the VM's fake gateway on the bridge (calico.ts). */
  calico?: CalicoGateway;
  /** The VM has IPv6 addresses: the bridge is its IPv6 router (ipv6/tap_ipv6.ts). */
  ipv6?: TapIpv6State;
}

/** What the tap binding records of an IPv6 interface's wiring (ipv6/tap_ipv6.ts). */
export interface TapIpv6State {
  /** The bridge's link-local address: the VM's router. */
  bridgeLinkLocal: string;
  /** The netns sysctls the router sets, as they were before wiring; unwiring sets them back. */
  sysctlsBefore: Record<string, string>;
}

/** A VF's settings as its PF holds them (`ip link show PF` vfinfo; `ip link set PF vf N …`). */
export interface VfPfSettings {
  /** Administrative MAC; 00:00:00:00:00:00 when none was set. */
  mac: string;
  /** 0: untagged. */
  vlan: number;
  qos: number;
  /** Absent when the PF's driver does not report it (then it is not set back either). */
  spoofchk?: boolean;
  trust?: boolean;
}

/** The SR-IOV binding's state (sriov.ts): the VF handed to the VM as a PCI device. */
export interface SriovWiredInterface extends WiredInterfaceBase {
  kind: 'sriov';
  version: 1;
  vf: {
    pciAddress: string;
    pfAddress: string;
    /** The PF's network interface in the host namespace. */
    pf: string;
    /** VF number on the PF (its virtfnN link). */
    index: number;
    /** The driver the VF had, which unwiring binds it back to. */
    driver: string;
    /** driver_override as found; absent when none. */
    driverOverride?: string;
    iommuGroup: string;
  };
  /** The VF's netdev in the pod netns as CNI left it; unwiring brings it back so. */
  netdev: {
    name: string;
    mac: string;
    mtu: number;
    wasUp: boolean;
    addrGenMode?: string;
    addresses: RecordedAddress[];
    routes: RecordedRoute[];
  };
  /** The VF's settings on the PF before wiring (put back by unwiring) and while wired. */
  pfBefore: VfPfSettings;
  pfWired: VfPfSettings;
}

/**
 * The masquerade binding's state (masquerade.ts): the veth keeps the pod IP; the VM is on a bridge
 * of its own with an internal address, behind the NAT table `table` in the pod netns.
 */
export interface MasqueradeWiredInterface extends WiredInterfaceBase {
  kind: 'masquerade';
  version: 1;
  /** The CNI veth, left as CNI made it; `ipv6`: IPv6 is on for it (bridge and TAP then get no link-local address). */
  uplink: { name: string; podAddress: string; ipv6?: true };
  bridge: { name: string; mac: string };
  tap: { name: string; multiQueue: boolean; uid?: number; gid?: number };
  linkGroup: number;
  /** The internal network: the bridge is its gateway, the VM has `vm`. */
  internal: MasqueradeInternalNetwork;
  /**
   * NAT66, when CNI gave the interface an IPv6 address (`podAddress`): the VM's internal IPv6
   * network, and the bridge's link-local address (the source of its router advertisements).
   * The `ip6` table of the name `table` holds its rules.
   */
  ipv6?: { podAddress: string; internal: MasqueradeInternalNetwork; bridgeLinkLocal: string };
  /** The forwarded container ports; empty: every port. */
  ports: MasqueradePort[];
  /** The nftables `ip` (and `ip6`) table holding the NAT rules (carries the owner id). */
  table: string;
  /** The netns sysctls before wiring; unwiring sets them back. */
  sysctlsBefore: Record<string, string>;
  /** Bridge and TAP were a warm netns's (BindingContext.prewired). */
  prewired?: true;
}

/** Persisted state of any binding kind. New kinds join this union. */
export type WiredInterface = TapWiredInterface | SriovWiredInterface | MasqueradeWiredInterface;
export type BindingKind = WiredInterface['kind'];

/** The VM's fake gateway for a Calico-shaped result, and what unwiring restores (see calico.ts). */
export interface CalicoGateway {
  /** The pod IP (the /32 CNI gave). */
  podAddress: string;
  /** Calico's link-scope gateway (169.254.1.1). */
  podGateway: string;
  /** The VM's gateway: an address on the bridge, inside the pod IP's /N. */
  fakeGateway: string;
  /** N: the VM's prefix length (--calico-subnet). */
  prefixLength: number;
  /** The netns sysctls as they were before wiring; unwiring sets them back. */
  sysctlsBefore: Record<string, string>;
}
