/**
 * Where a VM pod's Run/Create/Start time goes, read from the daemon's own debug lines (pure):
 * serve logs one "rpc" line per CRI call (durationMs) after the handler finished; netd one
 * "netd call" line per request (durationMs) before it answers, so a netd line always comes before
 * the rpc line of the call that made it; netd's setup also logs "sandbox network set up" with its
 * step totals (stepsMs). One pod's calls are read from the lines logged while they ran (a
 * sequential run: the window holds no other pod's calls).
 */
import type { LogLine } from '../lib/daemon.js';

/** Component name → milliseconds, for one pod. Names are indented by their depth. */
export type PodBreakdown = Record<string, number>;

const CALLS = ['RunPodSandbox', 'CreateContainer', 'StartContainer'] as const;
type Call = (typeof CALLS)[number];

/** The window's lines cut into one segment per call: each ends with that call's rpc line. */
function segments(lines: readonly LogLine[]): Partial<Record<Call, LogLine[]>> {
  const out: Partial<Record<Call, LogLine[]>> = {};
  let current: LogLine[] = [];
  for (const l of lines) {
    current.push(l);
    if (l.msg === 'rpc' && (CALLS as readonly string[]).includes(String(l.method))) {
      const call = l.method as Call;
      if (out[call]) return {}; // two of the same call: not one pod's window
      out[call] = current;
      current = [];
    }
  }
  return out;
}

function rpcMs(segment: readonly LogLine[]): number {
  return Number(segment[segment.length - 1]!.durationMs);
}

function netdMs(segment: readonly LogLine[], method: string): number {
  const hits = segment.filter((l) => l.msg === 'netd call' && l.method === method);
  return hits.length === 0 ? NaN : hits.reduce((sum, l) => sum + Number(l.durationMs), 0);
}

function stepMs(segment: readonly LogLine[], sandboxId: string, msg = 'sandbox network set up'): Record<string, number> {
  const line = segment.find((l) => l.msg === msg && l.sandboxId === sandboxId);
  const steps = line?.stepsMs;
  if (!steps || typeof steps !== 'object') return {};
  return Object.fromEntries(Object.entries(steps as Record<string, unknown>).map(([k, v]) => [k, Number(v)]));
}

/**
 * The split of one pod's three calls, or undefined when the window does not hold exactly one rpc
 * line of each. `clientMs` are the bench's round trips of the same calls.
 */
export function podBreakdown(lines: readonly LogLine[], sandboxId: string, clientMs: Record<Call, number>): PodBreakdown | undefined {
  const seg = segments(lines);
  if (!seg.RunPodSandbox || !seg.CreateContainer || !seg.StartContainer) return undefined;
  const run = rpcMs(seg.RunPodSandbox);
  const setup = netdMs(seg.RunPodSandbox, 'setup');
  const steps = stepMs(seg.RunPodSandbox, sandboxId);
  const stepsSum = Object.values(steps).reduce((a, b) => a + b, 0);
  const create = rpcMs(seg.CreateContainer);
  const createWait = netdMs(seg.CreateContainer, 'vmNetwork');
  const start = rpcMs(seg.StartContainer);
  const startWait = netdMs(seg.StartContainer, 'vmNetwork');
  // Labels are unique keys (rows of one table); indentation shows what each part belongs to.
  const out: PodBreakdown = {
    RunPodSandbox: clientMs.RunPodSandbox,
    '  Run: gRPC + client (round trip - handler)': clientMs.RunPodSandbox - run,
    '  Run: serve handler': run,
    '    serve own work (records, IPC) (handler - netd setup)': run - setup,
    '    netd setup': setup,
  };
  for (const [step, ms] of Object.entries(steps)) out[`      netd step ${step}`] = ms;
  if (Object.keys(steps).length > 0) out['      netd setup - its steps (CNI config load, DHCP kick-off)'] = setup - stepsSum;
  out.CreateContainer = clientMs.CreateContainer;
  out['  Create: gRPC + client'] = clientMs.CreateContainer - create;
  out['  Create: serve handler'] = create;
  out['    netd vmNetwork (wait for the VM side: wiring + DHCP, beside the overlay)'] = createWait;
  // netd's own step totals of that VM side (snapshot, plan, wire, record, dhcp), when logged then.
  for (const [step, ms] of Object.entries(stepMs(seg.CreateContainer, sandboxId, 'VM side of a sandbox prepared'))) out[`      VM side step ${step}`] = ms;
  out['    handler - vmNetwork (seed, define, record, and overlay time the wait did not cover)'] = create - createWait;
  out.StartContainer = clientMs.StartContainer;
  out['  Start: gRPC + client'] = clientMs.StartContainer - start;
  out['  Start: serve handler'] = start;
  out['    netd vmNetwork (already prepared)'] = startWait;
  out['    handler - vmNetwork (console pump, lookup, libvirt start, record)'] = start - startWait;
  return out;
}
