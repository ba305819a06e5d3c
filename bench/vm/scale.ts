/**
 * The scale phase of `npm run bench -- vm` (#17): many running VM pods on one machine. A daemon of
 * its own (log level info, as in production; 64 MiB guests) brings up pods in small batches (TCG
 * boots on two cores time out when too many start at once), each waited for until its guest
 * prints "VMLET-GUEST ready". At 1 running pod and again at N the bench reads, in this order:
 *
 * 1. vmlet's idle CPU: an idle window with nothing calling the daemon; the CPU time (utime +
 *    stime, reaped children included) of serve and every descendant that is vmlet's own (netd,
 *    helpers; not QEMU or virtiofsd), as % of one core. The guests' and the machine's busy time
 *    in the same window are kept for context.
 * 2. serve's and netd's VmRSS: the lowest of several readings (RSS moves between collections).
 * 3. List and status latencies: ListPodSandbox, ListContainers, PodSandboxStatus, ContainerStatus,
 *    and Version as the floor (no per-pod work: it shows what the machine's load alone does to a
 *    call), interleaved round-robin, raw round trips (the client's decoding left out).
 *
 * Then every pod is removed through the CRI. The arithmetic and the verdicts are pure functions
 * below (tested in bench/test/vm/scale.test.ts).
 */
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { percentile, summarize, type Summary } from '../lib/stats.js';
import { CLOCK_TICKS_PER_SECOND } from '../lib/proc.js';
import type { BenchDaemon } from '../lib/daemon.js';
import type { VmPhaseContext } from './phase_context.js';
import { removeVmPods } from './remove_pods.js';
import { CONTAINER_LOG_PATH, vmCreateContainerRequest, vmPodName, vmPodSandboxConfig } from './pods.js';
import { guestMarks, parseCriLog } from './signals.js';

/**
 * Default guest size: the goal names 64 MiB, but the busybox test guest (a 6.12 cloud kernel and
 * its initramfs) reboots in a loop right after SYSLINUX with 64 MiB; 96 MiB is enough for it.
 */
export const SCALE_MEMORY_MIB = 96;
/** vmlet's idle CPU at N pods must stay under this % of one core. */
export const IDLE_CPU_TARGET_PERCENT = 1;
/** serve + netd RSS growth per running VM must stay under this. */
export const RSS_PER_VM_TARGET_KIB = 512;
/**
 * "Unchanged" latency: the 10th percentile at N pods at most LATENCY_RATIO_LIMIT times the one at
 * 1 pod, or at most LATENCY_SLACK_MS above it. The low percentile, not the median: on a shared
 * 2-core machine at load 10-20 the median is mostly time spent waiting for a CPU (Version, which
 * does no per-pod work, had a median of 3.9 ms and a p10 of 0.93 ms in one run), while the
 * fastest tenth of the calls are those the scheduler did not delay, i.e. vmlet's own work. The
 * medians, p95s and Version's (the floor) are printed beside it.
 */
export const LATENCY_RATIO_LIMIT = 1.25;
export const LATENCY_SLACK_MS = 0.5;
export const LATENCY_PERCENTILE = 10;

export const LATENCY_METHODS = ['ListPodSandbox', 'ListContainers', 'PodSandboxStatus', 'ContainerStatus'] as const;
export const FLOOR_METHOD = 'Version';
export type LatencyMethod = (typeof LATENCY_METHODS)[number] | typeof FLOOR_METHOD;

/** One process as /proc/<pid>/stat shows it. */
export interface ProcEntry {
  pid: number;
  ppid: number;
  comm: string;
  /** utime + stime + cutime + cstime (clock ticks). */
  ticks: number;
}

/** Parses /proc/<pid>/stat text; the command may hold spaces and ')'. Pure. */
export function procEntryFromStat(stat: string): ProcEntry {
  const open = stat.indexOf('(');
  const close = stat.lastIndexOf(')');
  const rest = stat.slice(close + 2).split(' ');
  // rest[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
  return {
    pid: Number(stat.slice(0, open).trim()),
    ppid: Number(rest[1]),
    comm: stat.slice(open + 1, close),
    ticks: Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]),
  };
}

/** Guests and their file servers run under vmlet but are not vmlet's own work. */
export function isGuestProcess(comm: string): boolean {
  return comm.startsWith('qemu') || comm.startsWith('virtiofsd');
}

/**
 * `root` and its descendants that are vmlet's own: the walk does not enter a guest process
 * (QEMU, virtiofsd) or anything below one. Pure.
 */
export function vmletProcesses(table: readonly ProcEntry[], root: number): ProcEntry[] {
  const children = new Map<number, ProcEntry[]>();
  for (const p of table) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p]);
  const top = table.find((p) => p.pid === root);
  if (top === undefined) return [];
  const out: ProcEntry[] = [];
  const queue = [top];
  for (let p = queue.shift(); p; p = queue.shift()) {
    out.push(p);
    for (const c of children.get(p.pid) ?? []) if (!isGuestProcess(c.comm)) queue.push(c);
  }
  return out;
}

/**
 * CPU time of vmlet's own processes between two process tables, in ticks: all at the end minus
 * all at the start. A child that ended in between is in its parent's reaped-children time at the
 * end, so only its start is subtracted; one that started and ended in between counts whole. Pure.
 */
export function vmletTicksBetween(start: readonly ProcEntry[], end: readonly ProcEntry[], root: number): number {
  const sum = (ps: readonly ProcEntry[]) => ps.reduce((a, p) => a + p.ticks, 0);
  return sum(vmletProcesses(end, root)) - sum(vmletProcesses(start, root));
}

/** Ticks over a window as % of one core. Pure. */
export function percentOfCore(ticks: number, seconds: number): number {
  return seconds > 0 ? (ticks / CLOCK_TICKS_PER_SECOND / seconds) * 100 : NaN;
}

export interface IdleWindow {
  seconds: number;
  /** serve and its own descendants (netd, helpers), not guests. */
  vmletTicks: number;
  vmletPercent: number;
  /** The vmlet processes at the end of the window: pid, comm, ticks in the window. */
  processes: { pid: number; comm: string; ticks: number }[];
  /** The bench's QEMU processes, in cores, and the whole machine's busy time, in cores. */
  guestCores: number;
  machineCores: number;
  loadavgStart: number[];
  loadavgEnd: number[];
}

/** A process's memory right after a full collection (gc_probe.ts), in KiB. */
export interface AfterGc {
  rssKiB: number;
  heapUsedKiB: number;
  externalKiB: number;
}

export interface ScaleLevel {
  runningVms: number;
  idle: IdleWindow;
  /** serve's and netd's memory after a forced full collection (when the probe answered). */
  serveAfterGc?: AfterGc;
  netdAfterGc?: AfterGc;
  /** Lowest VmRSS of the readings, and all readings (KiB). */
  serveRssKiB: number;
  netdRssKiB: number;
  serveSamplesKiB: number[];
  netdSamplesKiB: number[];
  /** Round trips in ms per method, in call order. */
  latenciesMs: Record<string, number[]>;
  loadavgAfter: number[];
}

export interface ScalePod {
  name: string;
  sandboxId?: string;
  containerId?: string;
  /** Run + Create + Start round trips. */
  shareMs?: number;
  gotWarm?: boolean;
  /** StartContainer's return to the guest's "ready" line (as the bench saw it). */
  readyMs?: number;
  /** Removed through the CRI already. */
  removed?: boolean;
  error?: string;
}

/** serve's and netd's VmRSS (lowest of a few readings) after each batch came up. */
export interface RssTrackPoint {
  runningVms: number;
  serveRssKiB: number;
  netdRssKiB: number;
}

export interface ScaleResult {
  pods: number;
  batch: number;
  idleSeconds: number;
  callsPerMethod: number;
  memoryMiB: number;
  /** Two pods brought up and removed before the first level (not counted): the daemon's first warm and cold starts load code lazily. */
  warmupPods: ScalePod[];
  podSamples: ScalePod[];
  /** RSS after every batch: its least-squares slope cross-checks the two-level growth. */
  rssTrack: RssTrackPoint[];
  /** Wall time to bring all pods up (the batches one after the other). */
  bringUpWallMs?: number;
  levels: ScaleLevel[];
  teardownWallMs?: number;
  error?: string;
}

/** serve + netd growth per VM between the 1-pod and the N-pod reading. Pure. */
export function rssGrowthPerVm(one: Pick<ScaleLevel, 'runningVms' | 'serveRssKiB' | 'netdRssKiB'>, many: Pick<ScaleLevel, 'runningVms' | 'serveRssKiB' | 'netdRssKiB'>): { serveKiB: number; netdKiB: number; totalKiB: number } {
  const vms = many.runningVms - one.runningVms;
  if (vms <= 0) return { serveKiB: NaN, netdKiB: NaN, totalKiB: NaN };
  const serveKiB = (many.serveRssKiB - one.serveRssKiB) / vms;
  const netdKiB = (many.netdRssKiB - one.netdRssKiB) / vms;
  return { serveKiB, netdKiB, totalKiB: serveKiB + netdKiB };
}

/** Least-squares slope of serve + netd RSS over running VMs (KiB per VM); NaN with fewer than two distinct counts. Pure. */
export function rssSlopeKiB(points: readonly RssTrackPoint[]): number {
  const n = points.length;
  if (n < 2) return NaN;
  const xs = points.map((p) => p.runningVms);
  const ys = points.map((p) => p.serveRssKiB + p.netdRssKiB);
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    sxx += (xs[i]! - mx) ** 2;
  }
  return sxx === 0 ? NaN : sxy / sxx;
}

export interface LatencyComparison {
  method: string;
  one: Summary & { low: number };
  many: Summary & { low: number };
  /** LATENCY_PERCENTILE at N / at 1 pod: what the verdict reads. */
  lowRatio: number;
  /** median at N / median at 1 pod. */
  medianRatio: number;
  verdict: 'MET' | 'MISS' | '-';
}

/** Per method, the low percentile and the median at 1 and at N pods and their ratios; Version (the floor) gets no verdict. Pure. */
export function compareLatencies(one: Record<string, readonly number[]>, many: Record<string, readonly number[]>): LatencyComparison[] {
  const sum = (r: Record<string, readonly number[]>, m: string) => ({ ...summarize(r[m] ?? []), low: (r[m]?.length ?? 0) > 0 ? percentile(r[m]!, LATENCY_PERCENTILE) : NaN });
  return [...LATENCY_METHODS, FLOOR_METHOD].map((method) => {
    const a = sum(one, method);
    const b = sum(many, method);
    const lowRatio = b.low / a.low;
    const medianRatio = b.median / a.median;
    const verdict = !Number.isFinite(lowRatio) || method === FLOOR_METHOD ? '-' : lowRatio <= LATENCY_RATIO_LIMIT || b.low - a.low <= LATENCY_SLACK_MS ? 'MET' : 'MISS';
    return { method, one: a, many: b, lowRatio, medianRatio, verdict };
  });
}

export interface ScaleRow {
  goal: string;
  atOne: string;
  atMany: string;
  measured: string;
  verdict: 'MET' | 'MISS' | '-';
}

const f1 = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '-');
const f2 = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : '-');

/** The goal table: idle CPU, RSS growth per VM, and each list/status call. Pure. */
export function scaleRows(result: ScaleResult): ScaleRow[] {
  const one = result.levels.find((l) => l.runningVms === 1);
  const many = [...result.levels].sort((a, b) => b.runningVms - a.runningVms)[0];
  if (one === undefined || many === undefined || many === one) return [];
  const n = many.runningVms;
  const cpu = many.idle.vmletPercent;
  const plain = rssGrowthPerVm(one, many);
  const gcLevel = (l: ScaleLevel) => (l.serveAfterGc && l.netdAfterGc ? { runningVms: l.runningVms, serveRssKiB: l.serveAfterGc.rssKiB, netdRssKiB: l.netdAfterGc.rssKiB } : undefined);
  const g1 = gcLevel(one);
  const gN = gcLevel(many);
  const afterGc = g1 && gN ? rssGrowthPerVm(g1, gN) : undefined;
  const growth = afterGc ?? plain;
  const heap = one.serveAfterGc && many.serveAfterGc && one.netdAfterGc && many.netdAfterGc
    ? (many.serveAfterGc.heapUsedKiB + many.netdAfterGc.heapUsedKiB - one.serveAfterGc.heapUsedKiB - one.netdAfterGc.heapUsedKiB) / (n - one.runningVms)
    : NaN;
  const rows: ScaleRow[] = [
    {
      goal: `vmlet idle CPU at ${n} VMs < ${IDLE_CPU_TARGET_PERCENT}% of a core`,
      atOne: `${f2(one.idle.vmletPercent)}%`,
      atMany: `${f2(cpu)}%`,
      measured: `${f2(cpu)}%`,
      verdict: Number.isFinite(cpu) ? (cpu < IDLE_CPU_TARGET_PERCENT ? 'MET' : 'MISS') : '-',
    },
    {
      goal: `serve+netd RSS growth < ${RSS_PER_VM_TARGET_KIB} KiB per VM${afterGc ? ' (after a full GC)' : ''}`,
      atOne: `${f1(((g1 ?? one).serveRssKiB + (g1 ?? one).netdRssKiB) / 1024)} MiB`,
      atMany: `${f1(((gN ?? many).serveRssKiB + (gN ?? many).netdRssKiB) / 1024)} MiB`,
      measured: `${f1(growth.totalKiB)} KiB/VM (serve ${f1(growth.serveKiB)}, netd ${f1(growth.netdKiB)}${afterGc ? `; JS heap ${f1(heap)}; without the GC ${f1(plain.totalKiB)}` : ''}; slope over the batches ${f1(rssSlopeKiB(result.rssTrack ?? []))})`,
      verdict: Number.isFinite(growth.totalKiB) ? (growth.totalKiB < RSS_PER_VM_TARGET_KIB ? 'MET' : 'MISS') : '-',
    },
  ];
  for (const c of compareLatencies(one.latenciesMs, many.latenciesMs)) {
    rows.push({
      goal: c.method === FLOOR_METHOD ? `${c.method} (floor: no per-pod work)` : `${c.method} unchanged (p${LATENCY_PERCENTILE} <= ${LATENCY_RATIO_LIMIT}x or +${LATENCY_SLACK_MS} ms)`,
      atOne: `${f2(c.one.low)} / ${f2(c.one.median)} / ${f2(c.one.p95)}`,
      atMany: `${f2(c.many.low)} / ${f2(c.many.median)} / ${f2(c.many.p95)}`,
      measured: `p${LATENCY_PERCENTILE} ${f2(c.lowRatio)}x, median ${f2(c.medianRatio)}x`,
      verdict: c.verdict,
    });
  }
  return rows;
}

// ---- the phase (side effects) ----

export interface ScaleContext extends VmPhaseContext {
  /** Starts the phase's daemon (own state dir, --scale-memory guests, the image pulled); the phase stops it. */
  startDaemon: () => Promise<BenchDaemon>;
  /** A full collection in `pid` and its memory after it (gc_probe.ts); undefined when the probe is not there. */
  afterGc?: (pid: number) => Promise<AfterGc | undefined>;
  batch: number;
  idleSeconds: number;
  callsPerMethod: number;
  bootTimeoutS: number;
}

const RSS_READINGS = 10;
const RSS_INTERVAL_MS = 500;
/** Quiet time after the last call (or boot) before an idle window starts. */
const SETTLE_MS = 5_000;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new Error('interrupted'));
    const t = setTimeout(() => (signal.removeEventListener('abort', onAbort), resolve()), ms);
    const onAbort = () => (clearTimeout(t), reject(new Error('interrupted')));
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

async function procTable(): Promise<ProcEntry[]> {
  const out: ProcEntry[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      out.push(procEntryFromStat(await readFile(`/proc/${e}/stat`, 'utf8')));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

async function machineTicks(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n').find((l) => l.startsWith('cpu '))!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  return f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + (f[7] ?? 0);
}

/** `seconds` with nothing calling the daemon; vmlet's, the guests' and the machine's CPU time over it. */
async function idleWindow(ctx: ScaleContext, daemon: BenchDaemon, guestPids: readonly number[]): Promise<IdleWindow> {
  const loadavgStart = loadavg();
  const guestTicks = (t: readonly ProcEntry[]) => t.filter((p) => guestPids.includes(p.pid)).reduce((a, p) => a + p.ticks, 0);
  const m0 = await machineTicks();
  const t0 = await procTable();
  const at0 = ctx.now();
  await sleep(ctx.idleSeconds * 1000, ctx.signal);
  const m1 = await machineTicks();
  const t1 = await procTable();
  const seconds = (ctx.now() - at0) / 1000;
  const vmletTicks = vmletTicksBetween(t0, t1, daemon.pid);
  const before = new Map(vmletProcesses(t0, daemon.pid).map((p) => [p.pid, p.ticks]));
  return {
    seconds,
    vmletTicks,
    vmletPercent: percentOfCore(vmletTicks, seconds),
    processes: vmletProcesses(t1, daemon.pid).map((p) => ({ pid: p.pid, comm: p.comm, ticks: p.ticks - (before.get(p.pid) ?? 0) })),
    guestCores: percentOfCore(guestTicks(t1) - guestTicks(t0), seconds) / 100,
    machineCores: percentOfCore(m1 - m0, seconds) / 100,
    loadavgStart,
    loadavgEnd: loadavg(),
  };
}

/** Interleaved round-robin calls of every method, raw round trips in ms. */
async function latencies(ctx: ScaleContext, daemon: BenchDaemon, pod: ScalePod): Promise<Record<string, number[]>> {
  const requests: Record<LatencyMethod, object> = {
    ListPodSandbox: {},
    ListContainers: {},
    PodSandboxStatus: { pod_sandbox_id: pod.sandboxId },
    ContainerStatus: { container_id: pod.containerId },
    Version: { version: 'v1' },
  };
  const out: Record<string, number[]> = {};
  for (const m of Object.keys(requests)) out[m] = [];
  for (let i = 0; i < ctx.callsPerMethod; i++) {
    if (ctx.signal.aborted) throw new Error('interrupted');
    for (const [method, request] of Object.entries(requests)) {
      const t = ctx.now();
      await daemon.client.callRaw(method, request);
      out[method]!.push(ctx.now() - t);
    }
  }
  return out;
}

async function measureLevel(ctx: ScaleContext, daemon: BenchDaemon, pods: ScalePod[]): Promise<ScaleLevel> {
  const running = pods.filter((p) => p.error === undefined && p.readyMs !== undefined);
  ctx.step(`scale: ${running.length} VM(s) running; ${SETTLE_MS / 1000} s settle, ${ctx.idleSeconds} s idle window, RSS, ${ctx.callsPerMethod} calls per method`);
  await sleep(SETTLE_MS, ctx.signal);
  const domains = await Promise.all(running.map((p) => ctx.domainNameOf(daemon, p.containerId!)));
  const guestPids = [...(await ctx.qemuPidsOf(domains)).values()];
  const idle = await idleWindow(ctx, daemon, guestPids);
  const { serve: serveSamplesKiB, netd: netdSamplesKiB } = await lowestRss(ctx, daemon, RSS_READINGS);
  const netdPid = await daemon.netdPid();
  const serveAfterGc = await ctx.afterGc?.(daemon.pid);
  const netdAfterGc = netdPid === undefined ? undefined : await ctx.afterGc?.(netdPid);
  const latenciesMs = await latencies(ctx, daemon, running[0]!);
  const level: ScaleLevel = {
    runningVms: running.length,
    idle,
    ...(serveAfterGc ? { serveAfterGc } : {}),
    ...(netdAfterGc ? { netdAfterGc } : {}),
    serveRssKiB: Math.min(...serveSamplesKiB),
    netdRssKiB: Math.min(...netdSamplesKiB),
    serveSamplesKiB,
    netdSamplesKiB,
    latenciesMs,
    loadavgAfter: loadavg(),
  };
  ctx.step(`scale at ${level.runningVms} VM(s): vmlet idle CPU ${f2(idle.vmletPercent)}% of a core (guests ${f2(idle.guestCores)} cores, machine ${f2(idle.machineCores)}), serve ${f1(level.serveRssKiB / 1024)} MiB, netd ${f1(level.netdRssKiB / 1024)} MiB (after a full GC: serve ${f1((serveAfterGc?.rssKiB ?? NaN) / 1024)}, netd ${f1((netdAfterGc?.rssKiB ?? NaN) / 1024)}), ListPodSandbox median ${f2(summarize(latenciesMs.ListPodSandbox!).median)} ms, load ${idle.loadavgStart.map(f2).join(' ')}`);
  return level;
}

/** Run, Create, Start, then waits for the guest's "ready" line in the CRI log. */
async function bringUp(ctx: ScaleContext, daemon: BenchDaemon, sample: ScalePod): Promise<void> {
  const logDirectory = join(ctx.dir, 'scale-pods', sample.name);
  await mkdir(logDirectory, { recursive: true });
  const podConfig = vmPodSandboxConfig({ name: sample.name, uid: randomUUID(), logDirectory }, ctx.tag, new Date().toISOString());
  const t0 = ctx.now();
  const run = await daemon.client.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config: podConfig });
  sample.sandboxId = run.pod_sandbox_id;
  ctx.onSandbox(run.pod_sandbox_id);
  const created = await daemon.client.call<{ container_id: string }>('CreateContainer', vmCreateContainerRequest(run.pod_sandbox_id, podConfig, ctx.imageUrl, ctx.memoryMiB));
  sample.containerId = created.container_id;
  await daemon.client.call('StartContainer', { container_id: created.container_id });
  const started = ctx.now();
  sample.shareMs = started - t0;
  const domain = await ctx.domainNameOf(daemon, created.container_id);
  ctx.onDomain(domain);
  sample.gotWarm = domain.startsWith('vmlet-warm-');
  const logPath = join(logDirectory, CONTAINER_LOG_PATH);
  const deadline = Date.now() + ctx.bootTimeoutS * 1000;
  for (;;) {
    const text = await readFile(logPath, 'utf8').catch(() => '');
    if (guestMarks(parseCriLog(text)).readyAtMs !== undefined) break;
    if (Date.now() > deadline) throw new Error(`${sample.name}: the guest did not print "VMLET-GUEST ready" within ${ctx.bootTimeoutS} s`);
    if (!daemon.running) throw new Error(`vmlet serve exited while ${sample.name} booted:\n${daemon.output()}`);
    await sleep(500, ctx.signal);
  }
  sample.readyMs = ctx.now() - started;
}

/** Lowest serve and netd VmRSS of `readings` readings RSS_INTERVAL_MS apart. */
async function lowestRss(ctx: ScaleContext, daemon: BenchDaemon, readings: number): Promise<{ serve: number[]; netd: number[] }> {
  const serve: number[] = [];
  const netd: number[] = [];
  for (let i = 0; i < readings; i++) {
    if (i > 0) await sleep(RSS_INTERVAL_MS, ctx.signal);
    const m = await daemon.memory();
    if (m.serve) serve.push(m.serve.rssKiB);
    if (m.netd) netd.push(m.netd.rssKiB);
  }
  return { serve, netd };
}

/**
 * Brings up pods [from, to) in batches of ctx.batch, each batch waited for before the next; after
 * each batch a short RSS reading goes to `track` (when given).
 */
async function bringUpRange(ctx: ScaleContext, daemon: BenchDaemon, pods: ScalePod[], from: number, to: number, label = 's', track?: RssTrackPoint[]): Promise<void> {
  for (let i = from; i < to; i += ctx.batch) {
    if (ctx.signal.aborted) throw new Error('interrupted');
    const batch: ScalePod[] = [];
    for (let j = i; j < Math.min(to, i + ctx.batch); j++) {
      const sample: ScalePod = { name: vmPodName(ctx.tag, label, j) };
      pods.push(sample);
      batch.push(sample);
    }
    await Promise.all(
      batch.map((s) =>
        bringUp(ctx, daemon, s).catch((err: unknown) => {
          s.error = err instanceof Error ? err.message : String(err);
        }),
      ),
    );
    const failed = batch.find((s) => s.error !== undefined);
    if (failed) throw new Error(`scale: ${failed.name} failed: ${failed.error}`);
    const ready = batch.map((s) => s.readyMs!);
    if (track) {
      const r = await lowestRss(ctx, daemon, 4);
      track.push({ runningVms: pods.length, serveRssKiB: Math.min(...r.serve), netdRssKiB: Math.min(...r.netd) });
    }
    ctx.step(`scale: ${pods.length}/${label === 's' ? ctx.pods : to} ${label === 's' ? '' : 'warm-up '}VM(s) up (this batch: boot to ready ${Math.min(...ready).toFixed(0)}-${Math.max(...ready).toFixed(0)} ms, ${batch.filter((s) => s.gotWarm).length} warm)`);
  }
}

/** Every pod not removed yet removed as kubelet does (remove_pods.ts), each marked when it went. */
async function removeAll(daemon: BenchDaemon, pods: readonly ScalePod[]): Promise<void> {
  const left = pods.filter((p): p is ScalePod & { sandboxId: string } => p.sandboxId !== undefined && !p.removed);
  await removeVmPods(daemon, left, 'scale teardown', (pod) => (pod.removed = true));
}

export async function runScalePhase(ctx: ScaleContext): Promise<ScaleResult> {
  const result: ScaleResult = { pods: ctx.pods, batch: ctx.batch, idleSeconds: ctx.idleSeconds, callsPerMethod: ctx.callsPerMethod, memoryMiB: ctx.memoryMiB, warmupPods: [], podSamples: [], rssTrack: [], levels: [] };
  let daemon: BenchDaemon | undefined;
  try {
    daemon = await ctx.startDaemon();
    // Two at once: one adopts the warm VM, the other starts cold, so both paths have run once.
    ctx.step('scale: two warm-up pods (not counted), then removed');
    await bringUpRange(ctx, daemon, result.warmupPods, 0, 2, 'sw');
    await removeAll(daemon, result.warmupPods);
    let t = ctx.now();
    await bringUpRange(ctx, daemon, result.podSamples, 0, 1, 's', result.rssTrack);
    const firstMs = ctx.now() - t;
    result.levels.push(await measureLevel(ctx, daemon, result.podSamples));
    if (ctx.pods > 1) {
      t = ctx.now();
      await bringUpRange(ctx, daemon, result.podSamples, 1, ctx.pods, 's', result.rssTrack);
      result.bringUpWallMs = firstMs + (ctx.now() - t);
      result.levels.push(await measureLevel(ctx, daemon, result.podSamples));
    }
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
  } finally {
    if (daemon) {
      const t = ctx.now();
      ctx.step(`scale: removing ${result.podSamples.filter((p) => p.sandboxId).length} pod(s) through the CRI`);
      try {
        await removeAll(daemon, [...result.warmupPods, ...result.podSamples].filter((p) => p.sandboxId !== undefined && !p.removed));
      } catch (err) {
        result.error ??= err instanceof Error ? err.message : String(err);
      }
      result.teardownWallMs = ctx.now() - t;
      await ctx.stopDaemon(daemon);
    }
  }
  return result;
}
