/** The peer bench's result and its printed table. Pure. */
import { median, percentile } from '../lib/stats.js';
import { formatTable, ms } from '../lib/table.js';

export const PEER_RESULT_FORMAT = 'vmlet-bench-peer/1';

export interface PeerOptions {
  n: number;
  listPods: number;
  crictlCalls: number;
  versionCalls: number;
  vmWarmPool: number;
  /** Rounds of the warm-stop phase (0: skipped). */
  warmStop: number;
  /** Whether the ContainerStatus rows run (a created container on each side). */
  containerRows: boolean;
  runtime: 'dist' | 'tsx';
  json: string;
  /** A /24 prefix of 198.18.0.0/15 for the bench network; unset, a free one is picked. */
  subnetPrefix?: string;
  /** The bench network as a whole CIDR (`--subnet`), for more list pods than a /24 holds. */
  subnet?: string;
}

/** Samples of one runtime, in ms, each a client round trip. */
export interface RuntimeSamples {
  run: number[];
  stop: number[];
  /** vmlet: Stop of a sandbox whose warm VM was never used; containerd: its Stop in the same rounds. */
  stopWarm: number[];
  remove: number[];
  /** Version over this bench's grpc-js client. */
  version: number[];
  /** ListPodSandbox (unfiltered) over this bench's client with `listPods` sandboxes. */
  list: number[];
  /** ListContainers (unfiltered) over this bench's client with `listPods` sandboxes and no containers. */
  listContainers: number[];
  /** Status over this bench's client. */
  status: number[];
  /** PodSandboxStatus of one of the `listPods` sandboxes over this bench's client. */
  podStatus: number[];
  /** `crictl version`: a crictl process making one unary call, its start included. */
  crictlVersion: number[];
  /** `crictl pods` with `listPods` sandboxes, its start included. */
  crictlPods: number[];
  /** `crictl ps -a` (ListContainers) with `listPods` sandboxes, its start included. */
  crictlPs: number[];
  /** `crictl info` (Status, verbose), its start included. */
  crictlInfo: number[];
  /** `crictl inspectp <id>` (PodSandboxStatus, verbose), its start included. */
  crictlInspectp: number[];
  /** How long making the `listPods` sandboxes took (10 at a time), in ms: one sample. */
  listSetup: number[];
  /** ContainerStatus of a created container (vmlet: the test guest's VM; containerd: pause) over this bench's client. */
  containerStatus: number[];
  /** `crictl inspect <id>` (ContainerStatus, verbose) of that container, its start included. */
  crictlInspect: number[];
}

export interface PeerResult {
  format: typeof PEER_RESULT_FORMAT;
  startedAt: string;
  finishedAt: string;
  options: PeerOptions;
  loadavg: { start: number[]; end: number[] };
  versions: { containerd: string; crictl: string };
  network: { conflist: Record<string, unknown> };
  containerd: RuntimeSamples;
  vmlet: RuntimeSamples;
  /** The same conflist's raw floor: ip netns add + CNI ADD, CNI DEL + ip netns delete. */
  floor: { setup: number[]; teardown: number[]; teardownWarm: number[] };
  /** Why the warm-stop phase did not run, when it was asked for. */
  warmStopSkipped?: string;
  /** Why the ContainerStatus rows did not run, when they were asked for. */
  containerRowsSkipped?: string;
  /** `crictl --version`: crictl's start-up, no call. */
  crictlStart: number[];
  /** Before a phase ('unary', 'list'): how long each runtime took to go quiet (ms), see waitQuiet. */
  quietWaits: Record<string, Record<string, number>>;
  cleanup: { errors: string[]; leftoverNetns: string[]; bridgeLeft: boolean };
  error?: string;
}

export function emptySamples(): RuntimeSamples {
  return {
    run: [], stop: [], stopWarm: [], remove: [], version: [], list: [], listContainers: [], status: [], podStatus: [],
    crictlVersion: [], crictlPods: [], crictlPs: [], crictlInfo: [], crictlInspectp: [], listSetup: [],
    containerStatus: [], crictlInspect: [],
  };
}

/**
 * List pods each runtime keeps ready: a Linux bridge takes at most 1024 ports (BR_MAX_PORTS; a
 * 2001st veth gets "exchange full"), and both runtimes' pods share the bench's bridge. The rest
 * are stopped right after they are made: still listed (NOTREADY), as kubelet's lists hold stopped
 * sandboxes too, but off the bridge.
 */
export const MAX_READY_LIST_PODS = 500;

const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : '-');

/** The table of issue #17: containerd and vmlet side by side, same client, same run. */
export function peerTable(r: PeerResult): string {
  const n = r.options.n;
  const pods = r.options.listPods;
  const rows: [string, keyof RuntimeSamples, number[] | undefined][] = [
    [`RunPodSandbox (N=${n})`, 'run', r.floor.setup],
    [`StopPodSandbox (N=${n})`, 'stop', r.floor.teardown],
    ...(r.vmlet.stopWarm.length > 0
      ? [[`StopPodSandbox, warm VM never used (N=${r.vmlet.stopWarm.length})`, 'stopWarm', r.floor.teardownWarm] as [string, keyof RuntimeSamples, number[]]]
      : []),
    [`RemovePodSandbox (N=${n})`, 'remove', undefined],
    ['Version (grpc-js client)', 'version', undefined],
    ['Status (grpc-js client)', 'status', undefined],
    ['PodSandboxStatus (grpc-js client)', 'podStatus', undefined],
    ['ContainerStatus (grpc-js client)', 'containerStatus', undefined],
    [`ListPodSandbox, ${pods} pods (grpc-js client)`, 'list', undefined],
    [`ListContainers, ${pods} pods (grpc-js client)`, 'listContainers', undefined],
    ['`crictl version` (one unary call)', 'crictlVersion', undefined],
    ['`crictl info` (Status)', 'crictlInfo', undefined],
    ['`crictl inspectp` (PodSandboxStatus)', 'crictlInspectp', undefined],
    ['`crictl inspect` (ContainerStatus)', 'crictlInspect', undefined],
    [`\`crictl pods\` with ${pods} pods`, 'crictlPods', undefined],
    [`\`crictl ps -a\` with ${pods} pods`, 'crictlPs', undefined],
  ];
  const present = rows.filter(([, key]) => r.vmlet[key].length > 0 || r.containerd[key].length > 0);
  const body = present.map(([label, key, floor]) => {
    const c = median(r.containerd[key]);
    const v = median(r.vmlet[key]);
    const f = floor ? median(floor) : NaN;
    return [label, ms(c), ms(percentile(r.containerd[key], 95)), ms(v), ms(percentile(r.vmlet[key], 95)), ratio(v, c), floor ? ms(f) : '-', floor ? ratio(v, f) : '-'];
  });
  const table = formatTable(
    ['call (medians, ms)', 'containerd', 'p95', 'vmlet', 'p95', 'vmlet/containerd', 'floor', 'vmlet/floor'],
    body,
    ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
  );
  const start = median(r.crictlStart);
  return [
    table,
    '',
    `crictl's own start (\`crictl --version\`, no call): median ${ms(start)} ms; over it: ` +
      `\`crictl version\` containerd ${ms(median(r.containerd.crictlVersion) - start)} ms, vmlet ${ms(median(r.vmlet.crictlVersion) - start)} ms; ` +
      `\`crictl pods\` containerd ${ms(median(r.containerd.crictlPods) - start)} ms, vmlet ${ms(median(r.vmlet.crictlPods) - start)} ms`,
    ...(r.vmlet.containerStatus.length > 0
      ? ['ContainerStatus rows: one created container on each side, the test guest VM on vmlet, the pause image on containerd']
      : [`ContainerStatus rows not measured${r.containerRowsSkipped ? `: ${r.containerRowsSkipped}` : ''}`]),
    ...Object.entries(r.quietWaits ?? {}).map(([phase, w]) => `before the ${phase} rows, waited for each runtime to go quiet (≤ 20 ms CPU per 300 ms, twice): ${Object.entries(w).map(([k, v]) => `${k} ${v} ms`).join(', ')}`),
    ...(pods > MAX_READY_LIST_PODS ? [`list pods past the first ${MAX_READY_LIST_PODS} on each side are stopped once made (NOTREADY, still listed): one bridge holds 1024 ports`] : []),
    `making the ${pods} list pods (10 at a time): containerd ${ms(median(r.containerd.listSetup))} ms, vmlet ${ms(median(r.vmlet.listSetup))} ms`,
    'floor: the same conflist run raw (ip netns add + CNI ADD for Run, CNI DEL + ip netns delete for Stop), interleaved with the calls',
    ...(r.vmlet.stopWarm.length > 0
      ? ["warm VM never used: a second vmlet with --vm-warm-pool 1 (log level debug); each round waits for an idle warm VM, the sandbox adopts it; containerd's column is its Stop in the same rounds"]
      : []),
  ].join('\n');
}

/** The whole printed report. */
export function formatPeerReport(r: PeerResult): string {
  const la = (v: number[]) => v.map((x) => x.toFixed(2)).join(' ');
  const lines = [
    `vmlet vs containerd: same conflist, same client (this bench's grpc-js client; crictl ${r.versions.crictl} for the crictl rows), calls interleaved`,
    `containerd ${r.versions.containerd} + runc (Debian), vmlet with --vm-warm-pool ${r.options.vmWarmPool}, daemon from ${r.options.runtime}`,
    `load average (1/5/15 min) at start ${la(r.loadavg.start)}, at end ${la(r.loadavg.end)}`,
    '',
  ];
  if (r.vmlet.run.length > 0) lines.push(peerTable(r), '');
  if (r.warmStopSkipped) lines.push(`warm-stop rows skipped: ${r.warmStopSkipped}`, '');
  if (r.error) lines.push(`bench failed: ${r.error}`);
  const c = r.cleanup;
  lines.push(
    c.errors.length === 0 && c.leftoverNetns.length === 0 && !c.bridgeLeft
      ? 'cleanup: all sandboxes removed, daemons stopped, bridge deleted, no bench netns left'
      : `cleanup problems: ${[...c.errors, ...c.leftoverNetns.map((n) => `netns ${n} left`), ...(c.bridgeLeft ? ['bridge left'] : [])].join('; ')}`,
  );
  return lines.join('\n');
}
