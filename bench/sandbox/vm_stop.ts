/**
 * The `vm-stop` phase of the sandbox bench: StopPodSandbox of a sandbox whose VM is running (the
 * busybox test guest booted to its DHCP ACK; kubelet stops the sandbox with the VM still up on a
 * node drain or a pod deletion whose StopContainer failed), on a daemon with one warm VM (the
 * VM adopted from the pool) and on one with none (a cold VM). Each Stop is held against the floor
 * (CNI DEL + ip netns delete of the same conflist) measured one round right before it, as in the
 * warm-stop phase, so both see the same moment's load. Sequential; QEMU must be gone and the
 * network reclaimed before the reply (CRI's contract), so the Stop carries the VM's end.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { BenchDaemon, LogLine } from '../lib/daemon.js';
import { now } from '../lib/harness.js';
import { median, percentile } from '../lib/stats.js';
import { firstDhcpAck } from '../vm/signals.js';
import { vmCreateContainerRequest, vmPodName, vmPodSandboxConfig } from '../vm/pods.js';
import type { CniFloor } from './floor.js';
import { floorThenStop, netdTeardownStepsLines } from './netd_teardown_steps.js';

export type VmStopCase = 'warm' | 'cold';

export interface VmStopCaseResult {
  case: VmStopCase;
  n: number;
  stopMs: number[];
  removeMs: number[];
  floorStopMs: number[];
  floorStopMedianMs: number;
  /** netd's teardown steps of each Stop (its stepsMs), by step. */
  netdStepsMs: Record<string, number[]>;
  /** Untimed: StartContainer's reply to the guest's DHCP ACK. */
  bootMs: number[];
  /** How many of the VMs were warm ones (domain name), out of n. */
  warmVms: number;
}

export interface VmStopDeps {
  daemon: BenchDaemon;
  case: VmStopCase;
  tag: string;
  n: number;
  floor: CniFloor;
  imageUrl: string;
  memoryMiB: number;
  logDir: string;
  bootTimeoutMs: number;
  signal: AbortSignal;
  track: (id: string) => void;
  trackFloorNetns: (name: string) => void;
}

const warmReady = (l: LogLine) => l.msg === 'warm VM ready';

async function waitFor(what: string, cond: () => boolean, timeoutMs: number, signal: AbortSignal): Promise<number> {
  const t0 = now();
  while (!cond()) {
    if (signal.aborted) throw new Error('interrupted');
    if (now() - t0 > timeoutMs) throw new Error(`${what}: not within ${Math.round(timeoutMs / 1000)} s`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return now() - t0;
}

export async function vmStopPhase(d: VmStopDeps): Promise<VmStopCaseResult> {
  const { daemon } = d;
  const out: VmStopCaseResult = { case: d.case, n: d.n, stopMs: [], removeMs: [], floorStopMs: [], floorStopMedianMs: NaN, netdStepsMs: {}, bootMs: [], warmVms: 0 };
  const count = (match: (l: LogLine) => boolean) => daemon.logs.filter(match).length;
  for (let i = 0; i < d.n; i++) {
    // Warm: an idle warm VM before the Run (one made per claim, the first at start).
    if (d.case === 'warm') await waitFor('an idle warm VM', () => count(warmReady) > i, 180_000, d.signal);
    const name = vmPodName(d.tag, d.case === 'warm' ? 'vsw' : 'vsc', i);
    const logDirectory = join(d.logDir, name);
    await mkdir(logDirectory, { recursive: true });
    const podConfig = vmPodSandboxConfig({ name, uid: randomUUID(), logDirectory }, d.tag, new Date().toISOString());
    const { pod_sandbox_id: id } = await daemon.client.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config: podConfig });
    d.track(id);
    const { container_id: cid } = await daemon.client.call<{ container_id: string }>('CreateContainer', vmCreateContainerRequest(id, podConfig, d.imageUrl, d.memoryMiB));
    const st = await daemon.client.call<{ info: Record<string, string> }>('ContainerStatus', { container_id: cid, verbose: true });
    const domain = /<name>([^<]+)<\/name>/.exec((JSON.parse(st.info.info ?? '{}') as { domainXml?: string }).domainXml ?? '')?.[1] ?? '';
    if (domain.startsWith('vmlet-warm-')) out.warmVms++;
    await daemon.client.call('StartContainer', { container_id: cid });
    const started = now();
    // Running: the guest booted far enough to take its address from netd.
    await waitFor(`${name}: the guest's DHCP ACK`, () => firstDhcpAck(daemon.logs, id) !== undefined, d.bootTimeoutMs, d.signal);
    out.bootMs.push(now() - started);
    // Warm: the refill the claim started (a QEMU start) done, so it does not share the CPUs with the Stop.
    if (d.case === 'warm') await waitFor('the pool refill', () => count(warmReady) > i + 1, 180_000, d.signal);
    await floorThenStop(d, `vs${d.case[0]}`, i, daemon, id, out);
  }
  out.floorStopMedianMs = median(out.floorStopMs);
  return out;
}

/** The report's lines for the phase. Pure. */
export function vmStopLines(r: VmStopCaseResult): string[] {
  const fmt = (v: number) => v.toFixed(1);
  const stop = median(r.stopMs);
  const what = r.case === 'warm' ? 'a warm VM (daemon with --vm-warm-pool 1)' : 'a cold VM (daemon with --vm-warm-pool 0)';
  return [
    `StopPodSandbox with the VM running, ${what}, N=${r.n} (${r.warmVms} warm), sequential, guest booted to its DHCP ACK (median ${fmt(median(r.bootMs))} ms after StartContainer):`,
    `  median ${fmt(stop)} ms, p95 ${fmt(percentile(r.stopMs, 95))} ms = ${(stop / r.floorStopMedianMs).toFixed(2)}x the floor (CNI DEL + ip netns delete, one round before each Stop, median ${fmt(r.floorStopMedianMs)} ms); ` +
      `RemovePodSandbox median ${fmt(median(r.removeMs))} ms`,
    `  per round (Stop / floor ms): ${r.stopMs.map((s, i) => `${fmt(s)}/${fmt(r.floorStopMs[i]!)}`).join(', ')}`,
    ...netdTeardownStepsLines(r.netdStepsMs),
  ];
}
