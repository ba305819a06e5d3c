/** The JSON a sandbox bench run writes: every raw sample, so runs can be compared later. */
import type { MachineInfo, MemoryReading } from '../lib/proc.js';
import type { SpanReport } from './netd_spans.js';
import type { CallComponents } from './log_breakdown.js';
import type { ListTiming } from './list.js';

export const RESULT_FORMAT = 'vmlet-bench-sandbox/1';

import type { WarmStopResult } from './warm_stop.js';
import type { VmStopCaseResult } from './vm_stop.js';

export interface SandboxBenchOptions {
  n: number;
  concurrency: number;
  json: string;
  runtime: 'dist' | 'tsx';
  listRecords: number;
  listCalls: number;
  profile: 'auto' | 'always' | 'never';
  profileIterations: number;
  /** Sandboxes of the warm-stop phase (warm_stop.ts); 0 skips it. */
  warmStop: number;
  /** Sandboxes per case of the vm-stop phase (vm_stop.ts). */
  vmStop: number;
  /** Which phases run: the sandbox phases (sequential, concurrent), warm-stop, vm-stop, list. */
  phases: ('sandbox' | 'warm-stop' | 'vm-stop' | 'list')[];
  logLevel: string;
  /** A /24 prefix of 198.18.0.0/15 for the bench network; unset, a free one is picked. */
  subnetPrefix?: string;
}

export interface FloorSamples {
  /** netns add + every plugin's ADD: the floor of RunPodSandbox. */
  setupMs: number[];
  netnsAddMs: number[];
  /** Per sample, one entry per plugin in list order. */
  pluginAddMs: number[][];
  /** Every plugin's DEL + netns delete: the floor of StopPodSandbox. */
  teardownMs: number[];
  pluginDelMs: number[][];
  netnsDeleteMs: number[];
}

export interface VmletSamples {
  run: number[];
  stop: number[];
  remove: number[];
  sandboxIds: string[];
}

export interface PhaseResult {
  name: 'sequential' | 'concurrent';
  concurrency: number;
  n: number;
  floor: FloorSamples;
  vmlet: VmletSamples;
  /** Wall time of each batch (all N Runs, all N Stops, …). */
  wallMs: Record<string, number>;
  /**
   * CPUs kept busy on average by processes other than the bench, its daemon and their children
   * while the floor / vmlet part ran: how much the machine was shared (2 CPUs here).
   */
  otherCpuCores: { floor: number; vmlet: number };
  /** From the daemon's debug lines (sequential phase only: matching is by order). */
  logBreakdown?: { run?: CallComponents; stop?: CallComponents; remove?: CallComponents };
}

export interface ListResult {
  records: number;
  recordsWriteMs: number;
  cases: ListTiming[];
  otherCpuCores: number;
}

export interface MemorySample {
  at: string;
  serve?: MemoryReading;
  netd?: MemoryReading;
}

export interface SandboxBenchResult {
  format: typeof RESULT_FORMAT;
  startedAt: string;
  finishedAt: string;
  options: SandboxBenchOptions;
  machine: MachineInfo;
  /** 1, 5 and 15 minute load averages when the bench started and ended. */
  loadavg: { start: number[]; end: number[] };
  runtime: { mode: string; buildMs?: number; buildDiagnostics?: string };
  network: { conflist: Record<string, unknown>; bridge: string; subnet: string; cniBinDirs: string[] };
  warmup: { floorSetupMs: number; floorTeardownMs: number; runMs: number; stopMs: number; removeMs: number };
  /** Round trips of Version (the cheapest RPC) on the main daemon: the fixed cost of a call. */
  versionMs?: number[];
  phases: PhaseResult[];
  list?: ListResult;
  memory: MemorySample[];
  spans?: SpanReport & { otherCpuCores: number };
  /** The warm-stop phase, or why it was skipped. */
  warmStop?: WarmStopResult | { skipped: string };
  /** The vm-stop phase: the warm case, then the cold one. */
  vmStop?: VmStopCaseResult[] | { skipped: string };
  cleanup: { leftoverNetns: string[]; bridgeLeft: boolean; errors: string[] };
  error?: string;
}
