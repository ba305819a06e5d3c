/**
 * One measured Stop of the warm-stop and vm-stop phases: a floor round right before it (the same
 * conflist run raw, at the same moment's load), StopPodSandbox and RemovePodSandbox timed, and
 * netd's own step times of the teardown, read from its "sandbox network torn down" debug line.
 */
import { randomUUID } from 'node:crypto';
import type { BenchDaemon, LogLine } from '../lib/daemon.js';
import { now } from '../lib/harness.js';
import { median } from '../lib/stats.js';
import type { CniFloor } from './floor.js';

export interface StopSamples {
  floorStopMs: number[];
  stopMs: number[];
  removeMs: number[];
  netdStepsMs: Record<string, number[]>;
}

/**
 * The floor round, then the Stop and Remove of `sandboxId`; `afterRemove` runs before netd's
 * steps are read (e.g. waiting for the warm VM's return). `label` keeps the floor's names apart.
 */
export async function floorThenStop(
  d: { tag: string; floor: CniFloor; trackFloorNetns: (name: string) => void },
  label: string,
  i: number,
  daemon: BenchDaemon,
  sandboxId: string,
  out: StopSamples,
  afterRemove?: () => Promise<void>,
): Promise<void> {
  const netnsName = `vbfloor-${d.tag}-${label}${i}`;
  d.trackFloorNetns(netnsName);
  const pod = { namespace: 'vmlet-bench', name: `floor-${d.tag}-${label}-${i}`, uid: randomUUID(), infraContainerId: `vbfloor${d.tag}${label}${i}` };
  const { attachment } = await d.floor.setup(pod.infraContainerId, netnsName, pod);
  out.floorStopMs.push((await d.floor.teardown(attachment)).totalMs);
  const linesBefore = daemon.logs.filter(netdTornDown).length;
  let t = now();
  await daemon.client.call('StopPodSandbox', { pod_sandbox_id: sandboxId });
  out.stopMs.push(now() - t);
  t = now();
  await daemon.client.call('RemovePodSandbox', { pod_sandbox_id: sandboxId });
  out.removeMs.push(now() - t);
  await afterRemove?.();
  await collectNetdTeardownSteps(daemon, linesBefore, out.netdStepsMs);
}

export const netdTornDown = (l: LogLine): boolean => l.msg === 'sandbox network torn down';

/**
 * Waits (up to 2 s) for the teardown line after the `linesBefore` ones seen before the Stop and
 * adds its step times to `into`; a line that does not come adds nothing.
 */
export async function collectNetdTeardownSteps(daemon: BenchDaemon, linesBefore: number, into: Record<string, number[]>): Promise<void> {
  await daemon.waitForLines(0, netdTornDown, linesBefore + 1, 2000).catch(() => {});
  const line = daemon.logs.filter(netdTornDown)[linesBefore];
  for (const [step, ms] of Object.entries((line?.stepsMs ?? {}) as Record<string, number>)) (into[step] ??= []).push(ms);
}

/** The report's line for the collected steps (none when nothing was collected). Pure. */
export function netdTeardownStepsLines(steps: Record<string, number[]> | undefined): string[] {
  const entries = Object.entries(steps ?? {});
  if (entries.length === 0) return [];
  return [`  netd's teardown steps (median ms): ${entries.map(([step, ms]) => `${step} ${median(ms).toFixed(1)}`).join(', ')}`];
}
