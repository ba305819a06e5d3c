/** Throughput math, the verdict and the printed table of `npm run bench -- pull`. Pure. */
import { formatTable } from '../lib/table.js';
import { median } from '../lib/stats.js';

/** vmlet's PullImage must reach this share of the floor's throughput. */
export const PULL_TARGET_RATIO = 0.9;

/**
 * What each round measures. `vmlet` is PullImage through the CRI; the others are the floor,
 * the same bytes from the same server to a file on the same filesystem by curl, openssl and
 * coreutils (`sync FILE` is an fsync of the file):
 * - `curl`: `curl -o FILE`: raw loopback HTTP into the page cache, nothing durable, no digest
 * - `curl+fsync`: the same, then `sync FILE`: raw loopback HTTP to a durable file, no digest
 * - `curl+sha256+fsync`: `curl -o FILE`, `openssl dgst -sha256 FILE`, `sync FILE`, one after the other
 * - `curl|sha256+fsync`: `curl | tee FILE | openssl dgst -sha256`, then `sync FILE`: hashed while it
 *   downloads, as vmlet does
 * The last two do vmlet's work (download, digest, durable file); the faster of them (by median)
 * is the floor of the verdict. `curl+fsync` is the strict floor: the same without the digest.
 */
export const PULL_TOOLS = ['vmlet', 'curl', 'curl+fsync', 'curl+sha256+fsync', 'curl|sha256+fsync'] as const;
export type PullTool = (typeof PULL_TOOLS)[number];
export const DIGEST_FLOORS: readonly PullTool[] = ['curl+sha256+fsync', 'curl|sha256+fsync'];
export const STRICT_FLOOR: PullTool = 'curl+fsync';

export interface PullSample {
  tool: PullTool;
  round: number;
  seconds: number;
  /** CPU seconds of the tool's processes over the sample (vmlet: serve and its reaped children). */
  cpuSeconds: number;
  /** 1-minute load average when the sample ended. */
  load1: number;
  /** vmlet only: serve's own "pulling image" to "image pulled" log lines (the rest is the CRI call). */
  serveSeconds?: number;
}

/** Seconds between serve's first "pulling image" and the next "image pulled" line (their `time`, ms). */
export function pullSpanSeconds(lines: readonly { msg?: unknown; time?: unknown }[]): number | undefined {
  const start = lines.findIndex((l) => l.msg === 'pulling image' && typeof l.time === 'number');
  if (start < 0) return undefined;
  const end = lines.slice(start).find((l) => l.msg === 'image pulled' && typeof l.time === 'number');
  return end ? ((end.time as number) - (lines[start]!.time as number)) / 1000 : undefined;
}

export interface ToolSummary {
  tool: PullTool;
  rounds: number;
  medianSeconds: number;
  /** Decimal MB (10^6 bytes) per second at the median time. */
  mbPerSecond: number;
  /** Median over rounds of CPU seconds, per GiB (2^30 bytes) of image. */
  cpuSecondsPerGiB: number;
}

export function mbPerSecond(bytes: number, seconds: number): number {
  return seconds > 0 ? bytes / 1e6 / seconds : NaN;
}

export function cpuSecondsPerGiB(cpuSeconds: number, bytes: number): number {
  return bytes > 0 ? cpuSeconds / (bytes / 2 ** 30) : NaN;
}

/** Median time, throughput and CPU per GiB of one tool's samples; undefined when it has none. */
export function summarizeTool(samples: readonly PullSample[], tool: PullTool, bytes: number): ToolSummary | undefined {
  const own = samples.filter((s) => s.tool === tool);
  if (own.length === 0) return undefined;
  const medianSeconds = median(own.map((s) => s.seconds));
  return {
    tool,
    rounds: own.length,
    medianSeconds,
    mbPerSecond: mbPerSecond(bytes, medianSeconds),
    cpuSecondsPerGiB: cpuSecondsPerGiB(median(own.map((s) => s.cpuSeconds)), bytes),
  };
}

export interface PullVerdict {
  /** vmlet's throughput over the floor's (medians). */
  ratio: number;
  met: boolean;
}

export function pullVerdict(vmlet: ToolSummary, floor: ToolSummary, target = PULL_TARGET_RATIO): PullVerdict {
  const ratio = vmlet.mbPerSecond / floor.mbPerSecond;
  return { ratio, met: Number.isFinite(ratio) && ratio >= target };
}

/** The faster (by median) of the floors that compute the digest. */
export function digestFloor(summaries: readonly ToolSummary[]): ToolSummary | undefined {
  const floors = summaries.filter((s) => DIGEST_FLOORS.includes(s.tool));
  return floors.reduce<ToolSummary | undefined>((best, s) => (best === undefined || s.mbPerSecond > best.mbPerSecond ? s : best), undefined);
}

export interface PullBenchResult {
  benchmark: 'pull';
  sizeMib: number;
  bytes: number;
  rounds: number;
  /** What serves the file (the floor and vmlet fetch the same URL). */
  server: string;
  /** The name PullImage was given (URL@sha256:<hex>): vmlet compares the digest it computes. */
  imageName: string;
  samples: PullSample[];
  loadAverage: { start: number[]; end: number[] };
  cpus: number;
  runtime: string;
}

function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '-';
}

/** The summary table: one row per tool, the ratio to the verdict floor, and the verdict line. */
export function formatPullReport(result: PullBenchResult): string {
  const summaries = PULL_TOOLS.map((t) => summarizeTool(result.samples, t, result.bytes)).filter((s): s is ToolSummary => s !== undefined);
  const vmlet = summaries.find((s) => s.tool === 'vmlet');
  const rows = summaries.map((s) => {
    const ratio = vmlet && s.tool !== 'vmlet' ? fixed((vmlet.mbPerSecond / s.mbPerSecond) * 100, 0) + '%' : '';
    const loads = result.samples.filter((x) => x.tool === s.tool).map((x) => x.load1);
    return [s.tool, String(s.rounds), fixed(s.medianSeconds, 2), fixed(s.mbPerSecond, 0), fixed(s.cpuSecondsPerGiB, 2), ratio, fixed(median(loads), 2)];
  });
  const table = formatTable(
    ['', 'rounds', 'median s', 'MB/s', 'CPU s/GiB', 'vmlet / this', 'load1'],
    rows,
    ['left', 'right', 'right', 'right', 'right', 'right', 'right'],
  );
  const line = (floor: ToolSummary | undefined, what: string): string => {
    if (!vmlet || !floor) return `${what}: no samples of vmlet or the floor`;
    const v = pullVerdict(vmlet, floor);
    return `vmlet / ${floor.tool} (${what}): ${fixed(v.ratio * 100, 0)}% (target >= ${PULL_TARGET_RATIO * 100}%): ${v.met ? 'met' : 'NOT met'}`;
  };
  const verdict = [line(digestFloor(summaries), 'the faster floor with the digest computed'), line(summaries.find((s) => s.tool === STRICT_FLOOR), 'strict: no digest')].join('\n');
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
  return [
    `image pull over loopback HTTP, ${result.sizeMib} MiB raw disk, median of ${result.rounds} interleaved round(s), ${result.cpus} CPUs, daemon ${result.runtime}`,
    `server: ${result.server}; vmlet pulls ${result.imageName} (digest compared)`,
    table,
    verdict,
    `load average at start ${load(result.loadAverage.start)}, at end ${load(result.loadAverage.end)}`,
  ].join('\n');
}
