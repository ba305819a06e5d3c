/**
 * The `warm-stop` phase of the sandbox bench: StopPodSandbox of sandboxes that claimed a warm VM
 * (a daemon with `--vm-warm-pool 1`, so libvirt is needed) and never used it, as kubelet's pods
 * whose containers never got created, critest's sandbox tests, or a pod deleted while pulling.
 * vmlet gives the VM back to the pool with its netns made warm again (netd: unwire, CNI DEL,
 * prewire) instead of destroying it. Sequential; each round waits (untimed) for an idle warm VM,
 * checks that the Run adopted a warm netns, waits for the VM side, then times Stop and Remove.
 * The floor is CNI DEL + ip netns delete of the same conflist, one floor round right before each
 * Stop (interleaved, so both see the same load on a shared machine); netd's own step times
 * (its 'sandbox network torn down' line) say where a Stop's time went.
 */
import { randomUUID } from 'node:crypto';
import type { BenchDaemon, LogLine } from '../lib/daemon.js';
import { now } from '../lib/harness.js';
import { median, percentile } from '../lib/stats.js';
import { podIdentity, podSandboxConfig } from './pods.js';
import type { CniFloor } from './floor.js';
import { floorThenStop, netdTeardownStepsLines } from './netd_teardown_steps.js';

export interface WarmStopResult {
  n: number;
  stopMs: number[];
  removeMs: number[];
  /** How many Stops gave the VM back to the pool (its log line), out of n. */
  returned: number;
  /** The floor of Stop (CNI DEL + ip netns delete), one round right before each Stop. */
  floorStopMs: number[];
  /** Median of floorStopMs. */
  floorStopMedianMs: number;
  /** netd's teardown steps of each Stop (its stepsMs), by step. */
  netdStepsMs: Record<string, number[]>;
  /** Untimed wait for an idle warm VM before each Run. */
  warmWaitMs: number[];
  /** Untimed wait, before each Stop, for the refill the Run's claim started. */
  refillWaitMs: number[];
}

const warmReady = (l: LogLine) => l.msg === 'warm VM ready';
const warmReturned = (l: LogLine) => l.msg === 'unused warm VM returned to the pool';

export interface WarmStopDeps {
  daemon: BenchDaemon;
  tag: string;
  n: number;
  floor: CniFloor;
  signal: AbortSignal;
  /** Records a sandbox id for the cleanup. */
  track: (id: string) => void;
  /** Records a floor netns name for the cleanup. */
  trackFloorNetns: (name: string) => void;
  waitForVmSides: (ids: readonly string[]) => Promise<number>;
}

export async function warmStopPhase(d: WarmStopDeps): Promise<WarmStopResult> {
  const { daemon } = d;
  const out: WarmStopResult = { n: d.n, stopMs: [], removeMs: [], returned: 0, floorStopMs: [], floorStopMedianMs: NaN, netdStepsMs: {}, warmWaitMs: [], refillWaitMs: [] };
  const count = (match: (l: LogLine) => boolean) => daemon.logs.filter(match).length;
  for (let i = 0; i < d.n; i++) {
    // Idle VMs so far: made + returned - claimed (one per earlier round); and the previous
    // round's VM back (until then the pool may have none idle).
    const w0 = now();
    while (count(warmReady) + count(warmReturned) <= i || count(warmReturned) < i) {
      if (d.signal.aborted) throw new Error('interrupted');
      if (now() - w0 > 120_000) throw new Error('no idle warm VM within 120 s');
      await new Promise((r) => setTimeout(r, 20));
    }
    out.warmWaitMs.push(now() - w0);
    const config = podSandboxConfig(podIdentity(d.tag, 'wv', i, randomUUID()), d.tag, i, new Date().toISOString());
    const { pod_sandbox_id: id } = await daemon.client.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config });
    d.track(id);
    const st = await daemon.client.call<{ info: Record<string, string> }>('PodSandboxStatus', { pod_sandbox_id: id, verbose: true });
    const netnsPath = (JSON.parse(st.info.info ?? '{}') as { netnsPath?: string }).netnsPath ?? '';
    if (!netnsPath.includes('vmlet-warm-')) throw new Error(`sandbox ${id} did not adopt a warm netns (${netnsPath || 'none'})`);
    await d.waitForVmSides([id]);
    // The claim started a refill (a new QEMU, heavy under TCG): wait until it is ready, so the
    // floor and the Stop below do not share the CPUs with it. (Untimed; the pool is full again:
    // made + returned = claims + 1. A claim while the previous Stop's VM was still on its way
    // back starts no refill: that VM fills the pool.)
    const r0 = now();
    while (count(warmReady) + count(warmReturned) < i + 2 && now() - r0 < 180_000) {
      if (d.signal.aborted) throw new Error('interrupted');
      await new Promise((r) => setTimeout(r, 20));
    }
    out.refillWaitMs.push(now() - r0);
    const before = count(warmReturned);
    await floorThenStop(d, 'ws', i, daemon, id, out, async () => {
      // The netns is made warm again after the Stop's reply, then the VM goes back to the pool.
      await daemon.waitForLines(0, warmReturned, before + 1, 30_000);
      out.returned += count(warmReturned) > before ? 1 : 0;
    });
  }
  out.floorStopMedianMs = median(out.floorStopMs);
  return out;
}

/** The report's lines for the phase. Pure. */
export function warmStopLines(r: WarmStopResult): string[] {
  const fmt = (v: number) => v.toFixed(1);
  const stop = median(r.stopMs);
  return [
    `StopPodSandbox of a sandbox whose warm VM was never used (daemon with --vm-warm-pool 1, N=${r.n}, sequential, VM side ready before each Stop):`,
    `  median ${fmt(stop)} ms, p95 ${fmt(percentile(r.stopMs, 95))} ms = ${(stop / r.floorStopMedianMs).toFixed(2)}x the floor (CNI DEL + ip netns delete, one round before each Stop, median ${fmt(r.floorStopMedianMs)} ms); ` +
      `RemovePodSandbox median ${fmt(median(r.removeMs))} ms; VM given back to the pool ${r.returned}/${r.n}`,
    ...netdTeardownStepsLines(r.netdStepsMs),
  ];
}
