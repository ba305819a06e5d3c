/**
 * Where a sandbox call's time goes, read from the daemon's own debug lines: serve logs one "rpc"
 * line per CRI call (durationMs), netd one "netd call" line per request (durationMs), the CNI
 * runner one "CNI plugin ran" line per plugin (ms, containerId) and the tap binding one
 * "interface wired" line (ms, netns). Pure: lines and ids in, per-sandbox components out.
 * Calls of a sequential phase are matched by order; plugin and wiring lines by sandbox.
 */
import { netnsNameFor } from '../../src/network/names.js';
import type { LogLine } from '../lib/daemon.js';

export interface CallComponents {
  /** Component name → one value per sandbox, in call order. */
  [component: string]: number[];
}

function rpcDurations(lines: readonly LogLine[], method: string): number[] {
  return lines.filter((l) => l.msg === 'rpc' && l.method === method).map((l) => Number(l.durationMs));
}

function netdDurations(lines: readonly LogLine[], method: string): number[] {
  return lines.filter((l) => l.msg === 'netd call' && l.method === method).map((l) => Number(l.durationMs));
}

function pluginMs(lines: readonly LogLine[], command: string, sandboxId: string): number {
  return lines
    .filter((l) => l.msg === 'CNI plugin ran' && l.command === command && l.containerId === sandboxId)
    .reduce((sum, l) => sum + Number(l.ms), 0);
}

function wiredMs(lines: readonly LogLine[], sandboxId: string): number {
  const netns = netnsNameFor(sandboxId);
  return lines.filter((l) => l.msg === 'interface wired' && l.netns === netns).reduce((sum, l) => sum + Number(l.ms), 0);
}

function minus(a: readonly number[], ...bs: (readonly number[])[]): number[] {
  return a.map((v, i) => bs.reduce((acc, b) => acc - (b[i] ?? NaN), v));
}

/**
 * RunPodSandbox, split: client round trip = gRPC (client + HTTP/2 + server framing) + serve's
 * handler; serve's handler = its own work (validation, two record writes, IPC) + netd's setup;
 * netd's setup = CNI plugins + the rest (netns, records, cache). The interface wiring runs after
 * the reply (CreateContainer waits for it) and is shown apart.
 * Returns undefined when the lines do not match the calls one to one.
 */
export function runBreakdown(lines: readonly LogLine[], ids: readonly string[], clientMs: readonly number[]): CallComponents | undefined {
  const rpc = rpcDurations(lines, 'RunPodSandbox');
  const setup = netdDurations(lines, 'setup');
  if (rpc.length !== ids.length || setup.length !== ids.length) return undefined;
  const cni = ids.map((id) => pluginMs(lines, 'ADD', id));
  const wire = ids.map((id) => wiredMs(lines, id));
  return {
    'client round trip': [...clientMs],
    '  gRPC + client (round trip - serve handler)': minus(clientMs, rpc),
    '  serve handler': rpc,
    '    serve own work (records, IPC) (handler - netd setup)': minus(rpc, setup),
    '    netd setup': setup,
    '      CNI plugins ADD': cni,
    '      rest of netd setup (netns, records, CNI cache)': minus(setup, cni),
    'after the reply, once netd is idle: tap wiring (ip -batch + nft)': wire,
  };
}

/** StopPodSandbox, split the same way (netd teardown: unwire, CNI DEL, netns delete, records). */
export function stopBreakdown(lines: readonly LogLine[], ids: readonly string[], clientMs: readonly number[]): CallComponents | undefined {
  const rpc = rpcDurations(lines, 'StopPodSandbox');
  const teardown = netdDurations(lines, 'teardown');
  if (rpc.length !== ids.length || teardown.length !== ids.length) return undefined;
  const cni = ids.map((id) => pluginMs(lines, 'DEL', id));
  return {
    'client round trip': [...clientMs],
    '  gRPC + client (round trip - serve handler)': minus(clientMs, rpc),
    '  serve handler': rpc,
    '    serve own work (record, IPC) (handler - netd teardown)': minus(rpc, teardown),
    '    netd teardown': teardown,
    '      CNI plugins DEL': cni,
    '      rest of netd teardown (DHCP stop, unwire, netns delete, records, cache)': minus(teardown, cni),
  };
}

export function removeBreakdown(lines: readonly LogLine[], clientMs: readonly number[]): CallComponents | undefined {
  const rpc = rpcDurations(lines, 'RemovePodSandbox');
  if (rpc.length !== clientMs.length) return undefined;
  return {
    'client round trip': [...clientMs],
    '  gRPC + client (round trip - serve handler)': minus(clientMs, rpc),
    '  serve handler (record delete; synced behind)': rpc,
  };
}
