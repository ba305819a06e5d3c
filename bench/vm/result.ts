/** The JSON a VM bench run writes: every raw sample, so runs can be compared later. */
import type { MachineInfo, MemoryReading } from '../lib/proc.js';
import type { VmBenchOptions } from './options.js';
import type { PodBreakdown } from './log_breakdown.js';
import type { DhcpAck, GuestMarks } from './signals.js';
import type { RootSpanRecord } from './span_record.js';
import type { RootSummary } from './span_profile.js';
import type { FloorSamples } from './libvirt_floor.js';
import type { MountsResult } from './mounts.js';
import type { BurstsResult } from './bursts.js';
import type { ScaleResult } from './scale.js';

export const RESULT_FORMAT = 'vmlet-bench-vm/1';

/** One pod brought up: client round trips of the three calls, then the guest's boot. */
export interface PodSample {
  name: string;
  warmup: boolean;
  sandboxId?: string;
  containerId?: string;
  domainName?: string;
  /** The container's VM was a warm one (adopted), not started by StartContainer. */
  warm?: boolean;
  /** Untimed wait before Run for an idle warm VM (ms). */
  warmWaitMs?: number;
  podIp?: string;
  runMs?: number;
  createMs?: number;
  startMs?: number;
  /** Run + Create + Start: vmlet's own share. */
  vmletMs?: number;
  /** Epoch ms: RunPodSandbox sent, StartContainer answered. */
  runSentAt?: number;
  startReturnedAt?: number;
  /** netd's first "sent DHCP reply" ack line for the sandbox. */
  ack?: DhcpAck;
  /** ack - StartContainer's return. */
  bootMs?: number;
  /** ack - RunPodSandbox sent. */
  totalMs?: number;
  /** First PodSandboxStatus (verbose, polled every ACK_POLL_MS) whose netd stats counted an ACK: epoch ms of its answer. */
  ackCounterSeenAt?: number;
  /** Console protocol lines (epoch ms as the CRI log stamps them). */
  console?: GuestMarks;
  /** From the daemon's debug lines (sequential runs only). */
  breakdown?: PodBreakdown;
  /** CPUs kept busy, Run sent → ACK: by everything but the bench, serve, netd and the bench's guests; and by the bench's guests. */
  otherCpuCores?: number;
  guestCpuCores?: number;
  error?: string;
}

export interface MemorySample {
  at: string;
  /** Measured VMs running when read (the warm-up pod is never running then). */
  runningVms: number;
  /** The reading with the lowest VmRSS of several (see serveSamplesKiB). */
  serve?: MemoryReading;
  netd?: MemoryReading;
  /** Every VmRSS reading at this point, in KiB, in order. */
  serveSamplesKiB: number[];
  netdSamplesKiB: number[];
}

export interface TeardownSample {
  name: string;
  stopContainerMs: number;
  removeContainerMs: number;
  stopSandboxMs: number;
  removeSandboxMs: number;
}

export interface ProfileResult {
  pods: number;
  /** Client round trips in the profile daemon (spans on): first pod is the warm-up. */
  clientMs: { run: number[]; create: number[]; start: number[] };
  records: RootSpanRecord[];
  summary: RootSummary[];
  /** Minimal domains through libvirt's RPC, without vmlet (libvirt_floor.ts). */
  libvirtFloor?: FloorSamples;
  error?: string;
}

export interface VmBenchResult {
  format: typeof RESULT_FORMAT;
  startedAt: string;
  finishedAt: string;
  options: VmBenchOptions;
  machine: MachineInfo & { kvm: string; libvirtd: string; qemu: string; loadavgStart: number[]; loadavgEnd: number[] };
  runtime: { mode: string; buildMs?: number; buildDiagnostics?: string };
  network: { bridge: string; subnet: string; conflist: Record<string, unknown> };
  image: { path: string; bytes: number; url: string; pullMs: number; imageRef?: string };
  pods: PodSample[];
  /** Wall time of bringing up all measured pods (with --concurrency > 1, they overlap). */
  bringUpWallMs?: number;
  memory: MemorySample[];
  teardown: TeardownSample[];
  profile?: ProfileResult;
  /** Run + Create + Start with and without kubelet's two usual mounts, warm and cold (mounts.ts). */
  mounts?: MountsResult;
  /** Bursts of pods back-to-back and at once, per warm-pool setting, and an idle warm VM's cost (bursts.ts). */
  bursts?: BurstsResult;
  /** Many running VM pods: vmlet's idle CPU, RSS growth and list/status latencies at 1 and at N (scale.ts). */
  scale?: ScaleResult;
  /** vmlet domains of others found at the start (a second vmlet daemon removes domains it does not own). */
  foreignDomainsAtStart: string[];
  cleanup: { leftoverDomains: string[]; leftoverNetns: string[]; leftoverQemuPids: number[]; bridgeLeft: boolean; errors: string[]; leftoverMounts?: string[] };
  error?: string;
}
