/**
 * The bursts phase of `npm run bench -- vm` (#17): pods arriving faster than one warm VM covers.
 * Per warm-pool setting (BURST_POOLS, each on a daemon of its own, after one warm-up pod that is
 * not counted), N pods back-to-back (each Run
 * sent as soon as the previous Start returned) and then N at once, each pod's vmlet share
 * (Run + Create + Start round trips) recorded with whether it got a warm VM or a cold one. The
 * pods stay up (their guests boot, as in a real burst) until the burst ends, then all go. Before
 * each burst the bench waits, untimed, for the pool to settle (its idle count unchanged for a few
 * seconds; before the first burst, back at its floor), and records how many warm VMs were idle
 * then: the demand-sized pool grows after the first burst, so the second one starts with more. Also the cost of one idle warm VM: its QEMU's
 * memory from /proc and its netns objects (links, nftables tables, chains, rules).
 */
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { summarize, type Summary } from '../lib/stats.js';
import { vmCreateContainerRequest, vmPodName, vmPodSandboxConfig } from './pods.js';
import type { BenchDaemon } from '../lib/daemon.js';
import type { VmPhaseContext } from './phase_context.js';
import { removeVmPods } from './remove_pods.js';

const execFileP = promisify(execFile);

export interface BurstPool {
  label: string;
  /** The daemon's warm-pool flags. */
  args: string[];
  /** Its --vm-warm-pool: the first burst starts with this many idle. */
  floor: number;
}

export const BURST_POOLS: readonly BurstPool[] = [
  { label: 'default pool (--vm-warm-pool 1)', args: ['--vm-warm-pool', '1'], floor: 1 },
  { label: 'demand pool (1..4, 2 at once)', args: ['--vm-warm-pool', '1', '--vm-warm-pool-max', '4', '--vm-warm-fill-parallel', '2'], floor: 1 },
];

export type BurstMode = 'back-to-back' | 'at once';
export const BURST_MODES: readonly BurstMode[] = ['back-to-back', 'at once'];

export interface BurstPodSample {
  name: string;
  runMs?: number;
  createMs?: number;
  startMs?: number;
  vmletMs?: number;
  gotWarm?: boolean;
  error?: string;
}

export interface BurstRun {
  pool: string;
  mode: BurstMode;
  /** Idle warm VMs when the burst began. */
  idleAtStart: number;
  /** How long the bench waited (untimed) for the pool to settle before the burst. */
  settleWaitMs: number;
  /** From the first Run sent to the last Start returned. */
  wallMs?: number;
  pods: BurstPodSample[];
}

/** What one idle (paused, unclaimed) warm VM holds on the host. */
export interface IdleWarmVmCost {
  domain: string;
  /** The QEMU process: VmRSS, Pss and Private (USS) from /proc, in KiB. */
  qemuRssKiB: number;
  qemuPssKiB: number;
  qemuPrivateKiB: number;
  /** The virtiofsd processes serving its (empty) shares, summed, in KiB. */
  virtiofsdProcesses: number;
  virtiofsdRssKiB: number;
  virtiofsdPrivateKiB: number;
  netns: string;
  /** Links in its netns (loopback included), by name. */
  links: string[];
  nftTables: number;
  nftChains: number;
  nftRules: number;
}

export interface BurstsResult {
  podsPerBurst: number;
  /** Per daemon, the share of its one warm-up pod (first calls load code lazily; not in the bursts). */
  warmupShareMs: number[];
  runs: BurstRun[];
  idleWarmVm?: IdleWarmVmCost;
  error?: string;
}

export interface BurstRow {
  label: string;
  idleAtStart: number;
  warm: number;
  cold: number;
  failed: number;
  share: Summary;
  warmShare: Summary;
  coldShare: Summary;
  wallMs: number | undefined;
}

/** Per pool and mode: the shares of all pods, of the warm ones and of the cold ones. Pure. */
export function burstRows(runs: readonly BurstRun[]): BurstRow[] {
  return runs.map((r) => {
    const ok = r.pods.filter((p) => p.error === undefined && p.vmletMs !== undefined);
    const shares = (pods: readonly BurstPodSample[]) => summarize(pods.map((p) => p.vmletMs!));
    return {
      label: `${r.pool}, ${r.mode}`,
      idleAtStart: r.idleAtStart,
      warm: ok.filter((p) => p.gotWarm === true).length,
      cold: ok.filter((p) => p.gotWarm === false).length,
      failed: r.pods.length - ok.length,
      share: shares(ok),
      warmShare: shares(ok.filter((p) => p.gotWarm === true)),
      coldShare: shares(ok.filter((p) => p.gotWarm === false)),
      wallMs: r.wallMs,
    };
  });
}

/** The counts `nft --json list ruleset` gives, by object kind. Pure. */
export function nftCounts(json: string): { tables: number; chains: number; rules: number } {
  const doc = JSON.parse(json) as { nftables?: Record<string, unknown>[] };
  const items = doc.nftables ?? [];
  const count = (kind: string) => items.filter((o) => kind in o).length;
  return { tables: count('table'), chains: count('chain'), rules: count('rule') };
}

/** VmRSS (status), Pss and Private_Clean + Private_Dirty (smaps_rollup) of `pid`, in KiB. */
async function processMemory(pid: number): Promise<{ rss: number; pss: number; priv: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
  const field = (text: string, name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { rss: field(status, 'VmRSS'), pss: field(rollup, 'Pss'), priv: field(rollup, 'Private_Clean') + field(rollup, 'Private_Dirty') };
}

export interface BurstsContext extends VmPhaseContext {
  /** Starts a daemon with these warm-pool flags (own state dir, the image pulled); the phase stops it. */
  startDaemon: (pool: BurstPool, index: number) => Promise<BenchDaemon>;
  /** Idle warm VMs of `daemon` (paused vmlet-warm-… domains of its owner id). */
  idleWarmDomains: (daemon: BenchDaemon) => Promise<string[]>;
  /** The warm netns of `daemon` (vmlet-warm-<its owner id prefix>…). */
  warmNetnsOf: (daemon: BenchDaemon) => Promise<string[]>;
}

/** How long the idle count must stay the same for the pool to count as settled, and the most the bench waits. */
const SETTLE_QUIET_MS = 4_000;
const SETTLE_LIMIT_MS = 120_000;

/** Every BURST_POOLS setting, each burst mode in turn; a failure is recorded and ends the phase. */
export async function runBurstsPhase(ctx: BurstsContext): Promise<BurstsResult> {
  const result: BurstsResult = { podsPerBurst: ctx.pods, warmupShareMs: [], runs: [] };
  try {
    for (const [i, pool] of BURST_POOLS.entries()) {
      const daemon = await ctx.startDaemon(pool, i);
      try {
        // One pod first, not counted: a new daemon's first calls load code lazily.
        const warmup: BurstRun = { pool: pool.label, mode: 'back-to-back', idleAtStart: (await settle(ctx, daemon)).length, settleWaitMs: 0, pods: [] };
        await burst(ctx, daemon, warmup, `b${i}w`, 1);
        result.warmupShareMs.push(warmup.pods[0]!.vmletMs!);
        for (const mode of BURST_MODES) {
          if (ctx.signal.aborted) throw new Error('interrupted');
          const t = ctx.now();
          // The first burst meets the pool at its floor (the warm-up's claim raised a demand-sized
          // pool's target for a minute); the second whatever the first burst left it.
          const idle = await settle(ctx, daemon, mode === 'back-to-back' ? pool.floor : undefined);
          const run: BurstRun = { pool: pool.label, mode, idleAtStart: idle.length, settleWaitMs: ctx.now() - t, pods: [] };
          result.runs.push(run);
          if (i === 0 && mode === 'back-to-back') result.idleWarmVm = await idleWarmVmCost(ctx, daemon, idle);
          await burst(ctx, daemon, run, `b${i}${mode === 'at once' ? 'c' : 's'}`);
          const row = burstRows([run])[0]!;
          ctx.step(`burst ${row.label}: ${row.idleAtStart} warm VM(s) idle at the start; ${row.warm} warm, ${row.cold} cold; share median ${row.share.median.toFixed(0)} ms, max ${row.share.max.toFixed(0)} ms (cold median ${row.coldShare.median.toFixed(0)} ms)`);
        }
      } finally {
        await ctx.stopDaemon(daemon);
      }
    }
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
  }
  return result;
}

/**
 * Waits until the daemon's idle warm VMs (at least one; exactly `count` when given) have not
 * changed for SETTLE_QUIET_MS; returns them.
 */
async function settle(ctx: BurstsContext, daemon: BenchDaemon, count?: number): Promise<string[]> {
  const started = ctx.now();
  let idle = await ctx.idleWarmDomains(daemon);
  let since = ctx.now();
  while (ctx.now() - started < SETTLE_LIMIT_MS) {
    await new Promise((r) => setTimeout(r, 250));
    const next = await ctx.idleWarmDomains(daemon);
    if (next.length !== idle.length) {
      idle = next;
      since = ctx.now();
    } else if (idle.length > 0 && (count === undefined || idle.length === count) && ctx.now() - since >= SETTLE_QUIET_MS) {
      return next;
    }
  }
  throw new Error(`the warm pool did not settle${count === undefined ? '' : ` at ${count} idle VM(s)`} within ${SETTLE_LIMIT_MS / 1000} s (${idle.length} idle)`);
}

async function burst(ctx: BurstsContext, daemon: BenchDaemon, run: BurstRun, label: string, pods = ctx.pods): Promise<void> {
  const sandboxes: { sandboxId: string; containerId?: string }[] = [];
  const onePod = async (index: number) => {
    const sample: BurstPodSample = { name: vmPodName(ctx.tag, label, index) };
    run.pods.push(sample);
    const logDirectory = join(ctx.dir, 'burst-pods', sample.name);
    await mkdir(logDirectory, { recursive: true });
    const podConfig = vmPodSandboxConfig({ name: sample.name, uid: randomUUID(), logDirectory }, ctx.tag, new Date().toISOString());
    try {
      let t = ctx.now();
      const started = await daemon.client.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config: podConfig });
      sample.runMs = ctx.now() - t;
      ctx.onSandbox(started.pod_sandbox_id);
      const pod: { sandboxId: string; containerId?: string } = { sandboxId: started.pod_sandbox_id };
      sandboxes.push(pod);
      t = ctx.now();
      const created = await daemon.client.call<{ container_id: string }>('CreateContainer', vmCreateContainerRequest(started.pod_sandbox_id, podConfig, ctx.imageUrl, ctx.memoryMiB));
      sample.createMs = ctx.now() - t;
      pod.containerId = created.container_id;
      t = ctx.now();
      await daemon.client.call('StartContainer', { container_id: created.container_id });
      sample.startMs = ctx.now() - t;
      sample.vmletMs = sample.runMs + sample.createMs + sample.startMs;
      const domain = await ctx.domainNameOf(daemon, created.container_id);
      ctx.onDomain(domain);
      sample.gotWarm = domain.startsWith('vmlet-warm-');
    } catch (err) {
      sample.error = err instanceof Error ? err.message : String(err);
    }
  };
  const t0 = ctx.now();
  try {
    if (run.mode === 'back-to-back') {
      for (let i = 0; i < pods; i++) {
        if (ctx.signal.aborted) throw new Error('interrupted');
        await onePod(i);
      }
    } else {
      await Promise.all(Array.from({ length: pods }, (_, i) => onePod(i)));
    }
    run.wallMs = ctx.now() - t0;
  } finally {
    // All of the burst's pods go, as kubelet takes pods down.
    await removeVmPods(daemon, sandboxes, 'burst teardown');
  }
  const failed = run.pods.filter((p) => p.error !== undefined);
  if (failed.length > 0) throw new Error(`burst ${run.pool}, ${run.mode}: ${failed.length} pod(s) failed: ${failed[0]!.error}`);
}

/** The first idle warm VM's QEMU and virtiofsd memory, and the objects in the first warm netns. */
async function idleWarmVmCost(ctx: BurstsContext, daemon: BenchDaemon, idle: string[]): Promise<IdleWarmVmCost> {
  const domain = idle[0]!;
  const pid = (await ctx.qemuPidsOf([domain])).get(domain);
  if (pid === undefined) throw new Error(`no QEMU process found for the idle warm VM ${domain}`);
  const qemu = await processMemory(pid);
  // Its shares' virtiofsd processes name <state>/volumes/<container id>/…; the domain name carries the id's first 12 hex.
  const volumes = join(daemon.dirs.stateDir, 'volumes', domain.slice('vmlet-warm-'.length));
  let virtiofsdProcesses = 0;
  let virtiofsdRss = 0;
  let virtiofsdPriv = 0;
  for (const p of (await readdir('/proc')).filter((e) => /^\d+$/.test(e))) {
    try {
      const argv = (await readFile(`/proc/${p}/cmdline`, 'utf8')).split('\0');
      if (!argv[0]?.endsWith('/virtiofsd') || !argv.some((a) => a.startsWith(`source=${volumes}`))) continue;
      const m = await processMemory(Number(p));
      virtiofsdProcesses++;
      virtiofsdRss += m.rss;
      virtiofsdPriv += m.priv;
    } catch {
      // gone meanwhile
    }
  }
  const netns = (await ctx.warmNetnsOf(daemon))[0];
  if (netns === undefined) throw new Error('no warm netns of the daemon found');
  const { stdout: linkText } = await execFileP('ip', ['-n', netns, '-o', 'link', 'show']);
  const links = linkText.split('\n').map((l) => /^\d+:\s+([^:@]+)/.exec(l)?.[1]).filter((n): n is string => n !== undefined);
  const { stdout: nftJson } = await execFileP('ip', ['netns', 'exec', netns, 'nft', '--json', 'list', 'ruleset']);
  const nft = nftCounts(nftJson);
  return {
    domain,
    qemuRssKiB: qemu.rss,
    qemuPssKiB: qemu.pss,
    qemuPrivateKiB: qemu.priv,
    virtiofsdProcesses,
    virtiofsdRssKiB: virtiofsdRss,
    virtiofsdPrivateKiB: virtiofsdPriv,
    netns,
    links,
    nftTables: nft.tables,
    nftChains: nft.chains,
    nftRules: nft.rules,
  };
}
