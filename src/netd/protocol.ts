/**
 * Messages between `vmlet serve` and `vmlet netd`. They travel as JSON over the IPC unix socket
 * pair that fork() sets up; every request carries an id, every response answers one id.
 */
import type { PodDnsConfig, PortMapping, VmNetwork } from '../network/types.js';
import type { CodeValue } from '../errors.js';
import type { NetworkStatusEntry } from '../network/cni/attachments.js';

export type PortMappingSpec = PortMapping;

export interface SetupParams {
  sandboxId: string;
  podName: string;
  podNamespace: string;
  podUid: string;
  hostname: string;
  /** The pod's DNSConfig; when empty, DNS comes from the CNI result. */
  dns: PodDnsConfig;
  portMappings: PortMappingSpec[];
  /** A warm netns (from createWarmNetns) to adopt instead of creating one; teardown deletes it. */
  netnsName?: string;
  /**
   * The pod's annotations netd reads (NETWORK_ANNOTATIONS: the networks it asks for, its
   * bandwidth); absent (an older serve): the default network only.
   */
  annotations?: Record<string, string>;
  /**
   * The node's pod CIDRs (UpdateRuntimeConfig's pod_cidr, comma-separated there), passed to
   * plugins declaring the `ipRanges` capability; absent: none set (or an older serve).
   */
  podCidrs?: string[];
}

/** What RunPodSandbox needs; the VM side follows in the background (see vmNetwork). */
export interface SetupResult {
  netnsPath: string;
  /** CNI's addresses for the sandbox, in interface order. */
  podIps: string[];
}

export type VmNetworkResult = { ready: true; network: VmNetwork } | { ready: false; message: string };

/** vmNetworkPlan's answer; `tapsReady`: every TAP of the plan exists already (prewired), so QEMU can open them now. */
export type VmNetworkPlanResult = { ready: true; network: VmNetwork; tapsReady: boolean } | { ready: false; message: string };

export interface SandboxNetworkStatus {
  sandboxId: string;
  netnsPath: string;
  /** Where the VM side of the sandbox (wiring, DHCP) stands. */
  vmSide: 'pending' | 'preparing' | 'ready' | 'failed' | 'not prepared';
  error?: string;
  vmNetwork: VmNetwork | null;
  interfaces: Record<string, unknown>[];
  dhcp: Record<string, unknown>;
  /** Multus's `k8s.v1.cni.cncf.io/network-status` for the sandbox: every network's interfaces. */
  networkStatus?: NetworkStatusEntry[];
  /** The last CNI CHECK of the sandbox's networks (status with `check`, or --cni-check-interval). */
  cniCheck?: CniCheckReport;
}

/** What a CNI CHECK of a sandbox's networks found. */
export interface CniCheckReport {
  /** When it ran (ISO 8601). */
  at: string;
  /** No network failed its CHECK. */
  ok: boolean;
  networks: { network: string; ifName: string; result: 'ok' | 'failed' | 'skipped'; error?: string; reason?: string }[];
}

export interface Readiness {
  ready: boolean;
  reason?: string;
  message?: string;
}

export interface TeardownParams {
  sandboxId: string;
  /**
   * The sandbox adopted a warm netns whose VM it never used: after unwiring and CNI DEL, keep the
   * netns (nothing of the sandbox is left in it) instead of deleting it, so that serve can give the
   * VM back to its pool once rewarmNetns made it warm again, after StopPodSandbox's reply. netd
   * deletes it as usual when the teardown fails.
   */
  keepWarmNetns?: boolean;
}

export interface TeardownResult {
  /** The warm netns kept (only with `keepWarmNetns`), no sandbox's now; unset, it was deleted. */
  keptNetns?: string;
}

/** Every netd method: params → result. */
export interface NetdMethods {
  setup(params: SetupParams): Promise<SetupResult>;
  teardown(params: TeardownParams): Promise<TeardownResult>;
  /** With `check`, runs CNI CHECK of the sandbox's networks first (verbose PodSandboxStatus). */
  status(params: { sandboxId: string; check?: boolean }): Promise<SandboxNetworkStatus | null>;
  /** The sandbox's VM network as soon as it is planned, before the wiring is done. */
  vmNetworkPlan(params: { sandboxId: string }): Promise<VmNetworkPlanResult>;
  /** Waits for the sandbox's VM side (wired interfaces, DHCP serving), prepared after setup returns. */
  vmNetwork(params: { sandboxId: string }): Promise<VmNetworkResult>;
  networkReady(params: Record<string, never>): Promise<Readiness>;
  /** A fresh netns (lo up) for a warm VM, before any sandbox exists. */
  createWarmNetns(params: Record<string, never>): Promise<{ netnsName: string; netnsPath: string }>;
  /** Deletes a warm netns no sandbox adopted. */
  deleteWarmNetns(params: { netnsName: string }): Promise<Record<string, never>>;
  /**
   * Makes a netns a teardown kept (`keepWarmNetns`) a warm one again (prewired); when it cannot
   * (see WarmNetns.rewarm), deletes it and answers `rewarmed: false`.
   */
  rewarmNetns(params: { netnsName: string }): Promise<{ rewarmed: boolean }>;
}

export type NetdMethod = keyof NetdMethods;

export interface NetdRequest {
  id: number;
  method: NetdMethod;
  params: unknown;
}

export interface NetdResponse {
  id: number;
  result?: unknown;
  error?: { code: CodeValue; message: string };
}

/** Sent by netd on its own when serve must learn something about a sandbox without asking. */
export interface NetdEvent {
  event: 'vmSideFailed';
  sandboxId: string;
  message: string;
}

/** Sent once by netd when it has loaded its state and is ready for requests. */
export interface NetdReady {
  ready: true;
  pid: number;
}
