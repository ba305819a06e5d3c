import type { VmNetwork } from '../network/types.js';
import type { PortMappingSpec } from '../netd/protocol.js';

export type SandboxState = 'READY' | 'NOTREADY';

/** A pod sandbox as persisted under <state-dir>/sandboxes. Timestamps are decimal nanosecond strings. */
export interface SandboxRecord {
  id: string;
  /** namespace/name/uid/attempt: the identity that makes RunPodSandbox idempotent. */
  key: string;
  metadata: { name: string; uid: string; namespace: string; attempt: number };
  state: SandboxState;
  createdAtNs: string;
  hostname: string;
  logDirectory: string;
  runtimeHandler: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  dns: { servers: string[]; searches: string[]; options: string[] };
  portMappings: PortMappingSpec[];
  /** Set while netd has (or may have) built something for this sandbox. */
  netnsPath?: string;
  network?: VmNetwork;
  /** Why the sandbox is NOTREADY when a teardown could not finish; cleared once it does. */
  pendingCleanup?: string;
}

export function sandboxKey(m: SandboxRecord['metadata']): string {
  return `${m.namespace}/${m.name}/${m.uid}/${m.attempt}`;
}
