/**
 * What netd built for each sandbox, one JSON record per sandbox under <state-dir>/netd: enough for
 * a restarted netd to bring the DHCP responder back and for any netd to tear it all down.
 */
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { RecordStore } from '../store/record_store.js';
import type { SyncBehind } from '../store/sync_behind.js';
import type { AttachmentRecord } from '../network/cni/attachments.js';
import type { VmNetworkView } from '../network/cni/result.js';
import type { DhcpLease } from '../network/dhcp/lease_policy.js';
import type { BindingContext, WiredInterface } from '../network/bindings/types.js';
import type { VmNetwork } from '../network/types.js';
import type { PodNetworkSpec } from '../network/vm_network.js';
import type { SetupResult } from './protocol.js';

export interface SandboxNetworkRecord {
  id: string;
  netnsName: string;
  netnsPath: string;
  /** What CNI ADD gave the sandbox, as the VM side reads it (every network joined); set once ADD succeeded. */
  cni?: VmNetworkView;
  /** The networks the sandbox is attached to, in ADD order; written before the first ADD. Absent in records of older netds (one network). */
  attachments?: AttachmentRecord[];
  /** What the VM side needs from the pod spec besides CNI's answer. */
  pod?: PodNetworkSpec;
  /** Each wired interface with the context its binding needs to undo it. */
  interfaces: { context: BindingContext; state: WiredInterface }[];
  /** The VM side, once every interface is wired. */
  network?: VmNetwork;
  /** Bridge and TAP made in advance for interface 0 (eth0), when the netns was a warm one. */
  prewired?: { bridge: string; tap: string };
  leases: DhcpLease[];
}

export type SandboxNetworkRecords = RecordStore<SandboxNetworkRecord>;

/** The records of `stateDir`; everything they describe a reboot wipes, so `syncBehind` durability is enough. */
export function sandboxNetworkRecords(stateDir: string, logger: Logger, syncBehind: SyncBehind): SandboxNetworkRecords {
  return new RecordStore(join(stateDir, 'netd'), logger, syncBehind);
}

/** Whether a sandbox's record names `netnsName` (a warm netns it adopted). */
export function netnsInUse(records: SandboxNetworkRecords, netnsName: string): boolean {
  return [...records.values()].some((r) => r.netnsName === netnsName);
}

/**
 * The pod IPs, in CNI's interface order: the first is the pod IP, the rest its additional IPs.
 * Only the default network's: the others are the pod's secondary networks, as Multus has it.
 */
export function setupResultOf(record: SandboxNetworkRecord): SetupResult {
  const defaults = record.attachments?.find((a) => a.isDefault)?.interfaces;
  const interfaces = record.cni!.interfaces.filter((i) => defaults === undefined || defaults.includes(i.name));
  return { netnsPath: record.netnsPath, podIps: interfaces.flatMap((i) => i.ips.map((ip) => ip.address)) };
}
