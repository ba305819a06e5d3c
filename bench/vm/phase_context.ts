/** What the VM bench's daemon-owning phases (bursts.ts, scale.ts) get from run.ts alike. */
import type { BenchDaemon } from '../lib/daemon.js';

export interface VmPhaseContext {
  stopDaemon: (daemon: BenchDaemon) => Promise<void>;
  qemuPidsOf: (domains: string[]) => Promise<Map<string, number>>;
  domainNameOf: (daemon: BenchDaemon, containerId: string) => Promise<string>;
  dir: string;
  tag: string;
  imageUrl: string;
  memoryMiB: number;
  pods: number;
  signal: AbortSignal;
  now: () => number;
  /** Every sandbox and domain the phase makes, for the bench's cleanup. */
  onSandbox: (id: string) => void;
  onDomain: (name: string) => void;
  step: (text: string) => void;
}
