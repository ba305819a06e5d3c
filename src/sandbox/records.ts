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
  netnsPath?: string;
  /** CNI's addresses for the pod (the first is the pod IP); set while its network is up. */
  podIps?: string[];
  /** Why a sandbox whose network is still up went NOTREADY (its VM side could not be prepared). */
  notReadyReason?: string;
  /** Why the sandbox is NOTREADY when a teardown could not finish; cleared once it does. */
  pendingCleanup?: string;
}

export function sandboxKey(m: SandboxRecord['metadata']): string {
  return `${m.namespace}/${m.name}/${m.uid}/${m.attempt}`;
}
