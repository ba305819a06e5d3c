/**
 * `npm run bench -- sandbox`: a real vmlet daemon (serve + netd) on a bench CNI network, the
 * CNI floor measured in the same run right before each vmlet phase, RunPodSandbox /
 * StopPodSandbox / RemovePodSandbox sequentially and then `concurrency` at a time,
 * ListPodSandbox over a store of stopped sandbox records, serve's and netd's memory, and (when
 * Run misses its target, or on request) a span profile of netd's NetworkManager.
 *
 * Whatever happens (failure, Ctrl-C), the bench removes its sandboxes through the daemon, stops
 * its daemons, deletes any namespace it can attribute to itself and its bridge, and says so.
 */
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { spawn, type ChildProcess } from 'node:child_process';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { ExecPluginRunner } from '../../src/network/cni/exec.js';
import { netnsNameFor } from '../../src/network/names.js';
import { BenchDaemon, REPO_ROOT, buildDaemon, daemonDirs, ownPids, removeThroughDaemons, type EntryPoints, type LogLine } from '../lib/daemon.js';
import { openBenchRun, errorText, now } from '../lib/harness.js';
import { cpuSnapshot, machineInfo, otherCpuCores } from '../lib/proc.js';
import { pool, InterruptedError } from '../lib/pool.js';
import { RUN_LABEL } from '../lib/pods.js';
import { median, roundSamples } from '../lib/stats.js';
import { warmStopPhase, type WarmStopResult } from './warm_stop.js';
import { vmStopPhase, type VmStopCaseResult } from './vm_stop.js';
import { buildTestGuest, serveGuest } from '../vm/guest_image.js';
import { CriImageClient } from '../vm/image_client.js';
import { CniFloor, type FloorAttachment } from './floor.js';
import { cniBinDirs, deleteLink, deleteNetns, linkExists, listNetns, setUpBenchNetwork, type BenchNetwork } from '../lib/network.js';
import { podIdentity, podSandboxConfig, GROUPS } from './pods.js';
import { listCases, startReferenceServer, timeListCase, timeRoundTrips, writeStoppedSandboxes } from './list.js';
import { CriRuntimeClient } from '../lib/cri_client.js';
import { removeBreakdown, runBreakdown, stopBreakdown } from './log_breakdown.js';
import { parseSandboxOptions, SANDBOX_USAGE } from './options.js';
import { formatReport, runRatio, runVerdict } from './report.js';
import { RESULT_FORMAT, type FloorSamples, type MemorySample, type PhaseResult, type SandboxBenchOptions, type SandboxBenchResult } from './result.js';
import type { SpanReport } from './netd_spans.js';

/**
 * No warm VMs: these pods never get a container, so a warm VM a Run adopted would only be
 * destroyed again at Stop (~1.8 s of libvirt destroy), and refills would start QEMUs mid-run.
 */
const SANDBOX_BENCH_DAEMON_ARGS = ['--vm-warm-pool', '0'];

const CNI_TIMEOUT_MS = 60_000;
const LIBVIRT_SOCKET = '/run/libvirt/libvirt-sock';

/** Everything the cleanup needs to find, filled in as the bench goes. */
interface BenchState {
  tag: string;
  dir: string;
  network?: BenchNetwork;
  daemons: BenchDaemon[];
  floor?: CniFloor;
  /** State dirs whose sandbox and netd records name namespaces the bench made. */
  stateDirs: string[];
  /** Sandbox ids the bench created (through vmlet or the span probe). */
  sandboxIds: Set<string>;
  /** Floor namespaces the bench created. */
  floorNetns: Set<string>;
  spanChild?: ReturnType<typeof spawn>;
  /** Other helper processes to stop on cleanup. */
  children: Set<ChildProcess>;
}

async function sampleMemory(memory: MemorySample[], at: string, daemon: BenchDaemon): Promise<void> {
  memory.push({ at, ...(await daemon.memory()) });
}

function emptyFloor(): FloorSamples {
  return { setupMs: [], netnsAddMs: [], pluginAddMs: [], teardownMs: [], pluginDelMs: [], netnsDeleteMs: [] };
}

/** N floor setups, then N floor teardowns, `concurrency` at a time. */
async function floorPhase(state: BenchState, floor: CniFloor, label: string, n: number, concurrency: number, signal: AbortSignal): Promise<{ samples: FloorSamples; wallMs: Record<string, number> }> {
  const samples = emptyFloor();
  const t0 = now();
  const setups = await pool(n, concurrency, signal, async (i) => {
    const netnsName = `vbfloor-${state.tag}-${label}${i}`;
    state.floorNetns.add(netnsName);
    const pod = { namespace: 'vmlet-bench', name: `floor-${state.tag}-${label}-${i}`, uid: randomUUID(), infraContainerId: `vbfloor${state.tag}${label}${i}` };
    return floor.setup(pod.infraContainerId, netnsName, pod);
  });
  const t1 = now();
  const attachments: FloorAttachment[] = setups.map((s) => s.attachment);
  for (const s of setups) {
    samples.setupMs.push(s.timing.totalMs);
    samples.netnsAddMs.push(s.timing.netnsAddMs);
    samples.pluginAddMs.push(s.timing.pluginMs);
  }
  const teardowns = await pool(n, concurrency, signal, (i) => floor.teardown(attachments[i]!));
  const t2 = now();
  for (const t of teardowns) {
    samples.teardownMs.push(t.totalMs);
    samples.pluginDelMs.push(t.pluginMs);
    samples.netnsDeleteMs.push(t.netnsDeleteMs);
  }
  return { samples, wallMs: { floorSetupAll: t1 - t0, floorTeardownAll: t2 - t1 } };
}

async function expectSandboxes(daemon: BenchDaemon, tag: string, state: 'SANDBOX_READY' | undefined, expected: number, what: string): Promise<void> {
  const filter: Record<string, unknown> = { label_selector: { [RUN_LABEL]: tag } };
  if (state) filter.state = { state };
  const res = await daemon.client.call<{ items: unknown[] }>('ListPodSandbox', { filter });
  if (res.items.length === expected) return;
  // Say why: the reasons the daemon gives for the bench sandboxes that are not ready.
  const all = await daemon.client.call<{ items: { id: string; state: string }[] }>('ListPodSandbox', { filter: { label_selector: { [RUN_LABEL]: tag } } });
  const reasons = new Set<string>();
  for (const item of all.items.filter((i) => i.state !== 'SANDBOX_READY')) {
    const st = await daemon.client.call<{ info: Record<string, string> }>('PodSandboxStatus', { pod_sandbox_id: item.id, verbose: true });
    const info = JSON.parse(st.info.info ?? '{}') as { notReadyReason?: string; pendingCleanup?: string };
    reasons.add(info.notReadyReason ?? info.pendingCleanup ?? 'no reason given');
  }
  throw new Error(`${what}: ListPodSandbox shows ${res.items.length} bench sandboxes, expected ${expected}${reasons.size > 0 ? `; not ready because: ${[...reasons].join('; ')}` : ''}`);
}

const rpcLine = (method: string) => (l: LogLine) => l.msg === 'rpc' && l.method === method;

/** Waits until netd reports every sandbox's VM side ready; returns how long that took. */
export async function waitForVmSides(daemon: BenchDaemon, ids: readonly string[], signal: AbortSignal): Promise<number> {
  const t0 = now();
  const deadline = t0 + 120_000;
  for (const id of ids) {
    for (;;) {
      if (signal.aborted) throw new InterruptedError();
      const st = await daemon.client.call<{ info: Record<string, string> }>('PodSandboxStatus', { pod_sandbox_id: id, verbose: true });
      const network = (JSON.parse(st.info.info ?? '{}') as { network?: { vmSide?: string; error?: string } }).network;
      if (network?.vmSide === 'ready') break;
      if (network?.vmSide === 'failed') throw new Error(`VM side of sandbox ${id} failed: ${network.error}`);
      if (now() > deadline) throw new Error(`VM side of sandbox ${id} not ready after 120 s (${network?.vmSide})`);
      // A verbose status runs a CNI CHECK, which keeps netd busy, and netd prepares a VM side
      // nobody asked for only after 25 ms idle: polled every 10 ms, 20 VM sides took ~50 s.
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return now() - t0;
}

/** N Runs, then (with all N up) memory, then N Stops, then N Removes, `concurrency` at a time. */
async function vmletPhase(
  state: BenchState,
  daemon: BenchDaemon,
  phase: PhaseResult['name'],
  n: number,
  concurrency: number,
  memory: MemorySample[],
  signal: AbortSignal,
): Promise<Omit<PhaseResult, 'floor' | 'name' | 'concurrency' | 'n' | 'otherCpuCores'> & { marks: number[] }> {
  const ids: string[] = new Array<string>(n);
  const seen = new Date().toISOString();
  const label = phase === 'sequential' ? 's' : 'c';
  const marks = [daemon.logs.length];
  const timedCall = async (method: string, request: object) => {
    const t = now();
    const res = await daemon.client.call<Record<string, unknown>>(method, request);
    return { res, ms: now() - t };
  };

  const t0 = now();
  const run = await pool(n, concurrency, signal, async (i) => {
    const pod = podIdentity(state.tag, label, i, randomUUID());
    const { res, ms } = await timedCall('RunPodSandbox', { config: podSandboxConfig(pod, state.tag, i, seen) });
    const id = String(res.pod_sandbox_id);
    ids[i] = id;
    state.sandboxIds.add(id);
    return ms;
  });
  const t1 = now();
  await daemon.waitForLines(marks[0]!, rpcLine('RunPodSandbox'), n);
  // netd's lines come through their own pipe and may trail serve's.
  await daemon.waitForLines(marks[0]!, (l) => l.msg === 'netd call' && l.method === 'setup', n);
  marks.push(daemon.logs.length);
  await expectSandboxes(daemon, state.tag, 'SANDBOX_READY', n, `after ${n} RunPodSandbox`);
  // As each pod's CreateContainer would have it: every sandbox's VM side (wiring, DHCP) prepared,
  // so the memory sample and the Stops below see whole sandboxes.
  const vmSidesReadyMs = await waitForVmSides(daemon, ids, signal);
  const afterVmSides = daemon.logs.length;
  await sampleMemory(memory, `${n} sandboxes up (${phase})`, daemon);

  const t2 = now();
  const stop = await pool(n, concurrency, signal, async (i) => (await timedCall('StopPodSandbox', { pod_sandbox_id: ids[i] })).ms);
  const t3 = now();
  await daemon.waitForLines(marks[1]!, rpcLine('StopPodSandbox'), n);
  marks.push(daemon.logs.length);
  await expectSandboxes(daemon, state.tag, 'SANDBOX_READY', 0, `after ${n} StopPodSandbox`);

  const t4 = now();
  const remove = await pool(n, concurrency, signal, async (i) => (await timedCall('RemovePodSandbox', { pod_sandbox_id: ids[i] })).ms);
  const t5 = now();
  await daemon.waitForLines(marks[2]!, rpcLine('RemovePodSandbox'), n);
  marks.push(daemon.logs.length);
  await expectSandboxes(daemon, state.tag, undefined, 0, `after ${n} RemovePodSandbox`);
  await sampleMemory(memory, `after the ${phase} phase`, daemon);

  const result: Omit<PhaseResult, 'floor' | 'name' | 'concurrency' | 'n' | 'otherCpuCores'> & { marks: number[] } = {
    vmlet: { run, stop, remove, sandboxIds: ids },
    wallMs: { runAll: t1 - t0, vmSidesReadyAfterRuns: vmSidesReadyMs, stopAll: t3 - t2, removeAll: t5 - t4 },
    marks,
  };
  if (phase === 'sequential') {
    const window = (k: number) => daemon.logs.slice(marks[k], marks[k + 1]);
    result.logBreakdown = {
      // Through the VM-side wait: the wiring lines come after the Runs.
      run: runBreakdown(daemon.logs.slice(marks[0], afterVmSides), ids, run),
      stop: stopBreakdown(window(1), ids, stop),
      remove: removeBreakdown(window(2), remove),
    };
  }
  return result;
}

/** One untimed round of everything, so first-call costs (bridge creation, lazy loading) stay out of the samples. */
async function warmup(state: BenchState, daemon: BenchDaemon, floor: CniFloor): Promise<SandboxBenchResult['warmup']> {
  const ns = `vbfloor-${state.tag}-w0`;
  state.floorNetns.add(ns);
  const pod = { namespace: 'vmlet-bench', name: `floor-${state.tag}-w`, uid: randomUUID(), infraContainerId: `vbfloor${state.tag}w0` };
  const setup = await floor.setup(pod.infraContainerId, ns, pod);
  const teardown = await floor.teardown(setup.attachment);
  const config = podSandboxConfig(podIdentity(state.tag, 'w', 0, randomUUID()), state.tag, 0, new Date().toISOString());
  let t = now();
  const res = await daemon.client.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config });
  const runMs = now() - t;
  state.sandboxIds.add(res.pod_sandbox_id);
  t = now();
  await daemon.client.call('StopPodSandbox', { pod_sandbox_id: res.pod_sandbox_id });
  const stopMs = now() - t;
  t = now();
  await daemon.client.call('RemovePodSandbox', { pod_sandbox_id: res.pod_sandbox_id });
  const removeMs = now() - t;
  return { floorSetupMs: setup.timing.totalMs, floorTeardownMs: teardown.totalMs, runMs, stopMs, removeMs };
}

/** Round trips of Version, the cheapest RPC: the fixed cost of one call on this daemon and socket. */
async function timeVersion(daemon: BenchDaemon, calls: number): Promise<number[]> {
  for (let i = 0; i < 10; i++) await daemon.client.call('Version', {});
  const out: number[] = [];
  for (let i = 0; i < calls; i++) {
    const t = now();
    await daemon.client.call('Version', {});
    out.push(now() - t);
  }
  return out;
}

async function listPhase(state: BenchState, entry: EntryPoints, cniConfDir: string, binDirs: string[], opts: SandboxBenchOptions, memory: MemorySample[]): Promise<SandboxBenchResult['list']> {
  const dirs = daemonDirs(join(state.dir, 'list'), cniConfDir, binDirs);
  state.stateDirs.push(dirs.stateDir);
  // 0711 before the record store makes it (0700): QEMU's user must traverse it (--qemu-user).
  await mkdir(join(state.dir, 'list'), { recursive: true, mode: 0o711 });
  const t = now();
  await writeStoppedSandboxes(dirs.stateDir, opts.listRecords, state.tag);
  const recordsWriteMs = now() - t;
  const daemon = await BenchDaemon.start(entry, dirs, opts.logLevel, SANDBOX_BENCH_DAEMON_ARGS);
  state.daemons.push(daemon);
  await sampleMemory(memory, `list daemon, ${opts.listRecords} records loaded`, daemon);
  const cases = [];
  const pids = await ownPids(daemon);
  const cpu0 = await cpuSnapshot(pids);
  const responses: object[] = [];
  const all = listCases(opts.listRecords, 3 % GROUPS, GROUPS);
  for (const c of all) {
    const { timing, lastResponse } = await timeListCase(daemon, c, opts.listCalls, 20);
    cases.push(timing);
    responses.push(lastResponse);
  }
  const cpu1 = await cpuSnapshot(pids);
  await sampleMemory(memory, `list daemon, after ${cases.length * opts.listCalls * 2} ListPodSandbox`, daemon);
  await daemon.stop();

  // The same responses from a bare grpc-js server: what this stack costs for them, vmlet aside.
  for (const [i, c] of all.entries()) {
    const socket = join(state.dir, 'list', `reference-${i}.sock`);
    const server = await startReferenceServer(entry.listReference, socket, join(state.dir, 'list', `response-${i}.json`), responses[i]!);
    state.children.add(server);
    const client = new CriRuntimeClient(socket);
    try {
      cases[i]!.reference = await timeRoundTrips(client, c.request, opts.listCalls, 20);
    } finally {
      client.close();
      server.stdin!.end();
      await new Promise((r) => (server.exitCode !== null ? r(null) : server.once('exit', r)));
      state.children.delete(server);
    }
  }
  return { records: opts.listRecords, recordsWriteMs, cases, otherCpuCores: otherCpuCores(cpu0, cpu1) };
}

/** Runs the span probe in the daemon's runtime mode; see netd_spans.ts. */
async function spanProfile(state: BenchState, entry: EntryPoints, cniConfDir: string, binDirs: string[], iterations: number): Promise<SpanReport & { otherCpuCores: number }> {
  const stateDir = join(state.dir, 'spans', 'state');
  state.stateDirs.push(stateDir);
  const ids = Array.from({ length: iterations + 1 }, () => randomBytes(32).toString('hex'));
  for (const id of ids) state.sandboxIds.add(id);
  const flags = {
    'state-dir': stateDir,
    'cni-conf-dir': cniConfDir,
    'cni-bin-dir': binDirs.join(':'),
    'cni-cache-dir': join(stateDir, 'cni-cache'),
    'cni-timeout-ms': String(CNI_TIMEOUT_MS),
  };
  const child = spawn(process.execPath, [...entry.netdSpans, '--flags', JSON.stringify(flags), '--ids', ids.join(','), '--tag', state.tag], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    // Not in the terminal's process group: on Ctrl-C the bench stops it and sweeps after it.
    detached: true,
  });
  state.spanChild = child;
  const cpu0 = await cpuSnapshot([process.pid, child.pid!]);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-16_384)));
  // Its own time is counted once it is reaped (the bench's cutime), i.e. after 'exit'.
  const code = await new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
  const cpu1 = await cpuSnapshot([process.pid]);
  state.spanChild = undefined;
  if (code !== 0) throw new Error(`netd span probe exited with ${code}: ${stderr}`);
  const last = stdout.trim().split('\n').pop() ?? '';
  return { ...(JSON.parse(last) as SpanReport), otherCpuCores: otherCpuCores(cpu0, cpu1) };
}

/** Namespaces the bench can attribute to itself: from its own ids, floor names and the records in its state dirs. */
async function benchNetnsNames(state: BenchState): Promise<Set<string>> {
  const names = new Set<string>(state.floorNetns);
  for (const id of state.sandboxIds) names.add(netnsNameFor(id));
  for (const stateDir of state.stateDirs) {
    for (const sub of ['sandboxes', 'netd']) {
      let files: string[] = [];
      try {
        files = (await readdir(join(stateDir, sub))).filter((f) => f.endsWith('.json'));
      } catch {
        continue;
      }
      for (const f of files) {
        try {
          const rec = JSON.parse(await readFile(join(stateDir, sub, f), 'utf8')) as { id?: string; netnsName?: string };
          if (typeof rec.netnsName === 'string') names.add(rec.netnsName);
          else if (typeof rec.id === 'string') names.add(netnsNameFor(rec.id));
        } catch {
          // An unreadable record names nothing.
        }
      }
    }
  }
  return names;
}

async function cleanup(state: BenchState): Promise<SandboxBenchResult['cleanup']> {
  const errors: string[] = [];
  const note = (what: string, err: unknown) => errors.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
  if (state.spanChild && state.spanChild.exitCode === null) {
    state.spanChild.kill('SIGTERM');
    await new Promise((r) => state.spanChild!.once('exit', r));
  }
  for (const child of state.children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  }
  await removeThroughDaemons(state.daemons, state.tag, { containers: false }, errors, note);
  // What the daemon could not remove (or a crash left): delete by name.
  const names = await benchNetnsNames(state);
  for (const name of await listNetns()) {
    if (!names.has(name)) continue;
    await deleteNetns(name).catch((err: unknown) => note(`delete netns ${name}`, err));
  }
  if (state.network) await deleteLink(state.network.bridge).catch((err: unknown) => note(`delete bridge ${state.network!.bridge}`, err));
  const leftoverNetns = (await listNetns()).filter((n) => names.has(n));
  const bridgeLeft = state.network ? await linkExists(state.network.bridge) : false;
  await rm(state.dir, { recursive: true, force: true }).catch((err: unknown) => note(`remove ${state.dir}`, err));
  return { leftoverNetns, bridgeLeft, errors };
}

export async function runSandboxBench(argv: readonly string[]): Promise<number> {
  const opened = openBenchRun({
    argv,
    parse: (args, startedAt) => parseSandboxOptions(args, REPO_ROOT, startedAt),
    usage: SANDBOX_USAGE,
    rootReason: 'the sandbox bench creates network namespaces and bridges',
    prefix: '[bench]',
    interrupt: {
      first: 'letting calls in flight finish, then cleaning up (this takes a few seconds)',
      again: 'still cleaning up; the cleanup is what keeps this host tidy, please wait',
    },
  });
  if (typeof opened === 'number') return opened;
  const { run, opts, startedAt, jsonPath } = opened;
  const { signal, step, checkAbort } = run;

  const tag = randomBytes(3).toString('hex');
  const state: BenchState = {
    tag,
    // 0711: QEMU's user (--qemu-user) must traverse it to reach the VM files below.
    dir: await mkdtemp(join(tmpdir(), 'vmlet-bench-')).then(async (d) => (await chmod(d, 0o711), d)),
    daemons: [],
    stateDirs: [],
    sandboxIds: new Set(),
    floorNetns: new Set(),
    children: new Set(),
  };
  const result: SandboxBenchResult = {
    format: RESULT_FORMAT,
    startedAt: startedAt.toISOString(),
    finishedAt: '',
    options: opts,
    machine: await machineInfo(state.dir),
    loadavg: { start: loadavg(), end: [] },
    runtime: { mode: opts.runtime },
    network: { conflist: {}, bridge: '', subnet: '', cniBinDirs: [] },
    warmup: { floorSetupMs: NaN, floorTeardownMs: NaN, runMs: NaN, stopMs: NaN, removeMs: NaN },
    phases: [],
    memory: [],
    cleanup: { leftoverNetns: [], bridgeLeft: false, errors: [] },
  };

  try {
    const binDirs = await cniBinDirs();
    const { network, cniConfDir, conflist, config: netConfig } = await setUpBenchNetwork(state.dir, {
      networkName: `vmlet-bench-${tag}`,
      bridge: `vbench${tag}`,
      fileName: '10-vmlet-bench.conflist',
      ...(opts.subnetPrefix !== undefined ? { subnetPrefix: opts.subnetPrefix } : {}),
    });
    state.network = network;
    result.network = { conflist, bridge: network.bridge, subnet: network.subnet, cniBinDirs: binDirs };

    const { entry, runtime } = await buildDaemon(opts.runtime, join(state.dir, 'build'), step);
    result.runtime = runtime;
    checkAbort();

    step('starting vmlet serve');
    const mainDirs = daemonDirs(join(state.dir, 'main'), cniConfDir, binDirs);
    state.stateDirs.push(mainDirs.stateDir);
    const daemon = await BenchDaemon.start(entry, mainDirs, opts.logLevel, SANDBOX_BENCH_DAEMON_ARGS);
    state.daemons.push(daemon);
    await sampleMemory(result.memory, 'after start', daemon);

    const floor = new CniFloor(netConfig, new ExecPluginRunner({ binDirs, timeoutMs: CNI_TIMEOUT_MS }));
    state.floor = floor;
    step('warm-up: one floor round and one Run/Stop/Remove (not counted)');
    result.warmup = await warmup(state, daemon, floor);
    await sampleMemory(result.memory, 'after warm-up', daemon);
    result.versionMs = await timeVersion(daemon, 100);

    for (const [name, concurrency] of opts.phases.includes('sandbox') ? ([['sequential', 1], ['concurrent', opts.concurrency]] as const) : []) {
      checkAbort();
      step(`${name}: floor, ${opts.n} × (ip netns add + CNI ADD), then ${opts.n} × (CNI DEL + ip netns delete)${concurrency > 1 ? `, ${concurrency} at a time` : ''}`);
      const cpu0 = await cpuSnapshot(await ownPids(daemon));
      const floorResult = await floorPhase(state, floor, name === 'sequential' ? 's' : 'c', opts.n, concurrency, signal);
      const cpu1 = await cpuSnapshot(await ownPids(daemon));
      step(`${name}: vmlet, ${opts.n} × RunPodSandbox, then Stop, then Remove${concurrency > 1 ? `, ${concurrency} at a time` : ''}`);
      const v = await vmletPhase(state, daemon, name, opts.n, concurrency, result.memory, signal);
      const cpu2 = await cpuSnapshot(await ownPids(daemon));
      result.phases.push({
        name,
        concurrency,
        n: opts.n,
        floor: floorResult.samples,
        vmlet: v.vmlet,
        wallMs: { ...floorResult.wallMs, ...v.wallMs },
        otherCpuCores: { floor: otherCpuCores(cpu0, cpu1), vmlet: otherCpuCores(cpu1, cpu2) },
        ...(v.logBreakdown ? { logBreakdown: v.logBreakdown } : {}),
      });
    }
    await sampleMemory(result.memory, 'end of the sandbox phases', daemon);
    step('stopping the daemon');
    await daemon.stop();

    if (opts.warmStop > 0 && opts.phases.includes('warm-stop')) {
      checkAbort();
      result.warmStop = await runWarmStop(state, entry, cniConfDir, binDirs, opts, result, step, signal);
    }

    if (opts.phases.includes('vm-stop')) {
      checkAbort();
      result.vmStop = await runVmStop(state, entry, cniConfDir, binDirs, opts, step, signal);
    }

    if (opts.phases.includes('list')) {
      checkAbort();
      step(`ListPodSandbox: writing ${opts.listRecords} stopped sandbox records, starting a daemon over them`);
      result.list = await listPhase(state, entry, cniConfDir, binDirs, opts, result.memory);
    }

    const missed = result.phases.some((p) => runVerdict(runRatio(p)) === 'MISS');
    if (opts.profile === 'always' || (opts.profile === 'auto' && missed)) {
      checkAbort();
      step(`profile: netd's NetworkManager with timing spans, 1 + ${opts.profileIterations} sandboxes`);
      result.spans = await spanProfile(state, entry, cniConfDir, binDirs, opts.profileIterations);
    }
  } catch (err) {
    result.error = errorText(err);
  } finally {
    step('cleaning up');
    result.cleanup = await cleanup(state);
    result.finishedAt = new Date().toISOString();
    result.loadavg.end = loadavg();
    run.close();
  }

  roundAll(result);
  const c = result.cleanup;
  return run.finish(jsonPath, result, formatReport(result), c.leftoverNetns.length > 0 || c.bridgeLeft || c.errors.length > 0);
}

/** The warm-stop phase (warm_stop.ts) on a daemon of its own with one warm VM; skipped without libvirtd. */
async function runWarmStop(
  state: BenchState,
  entry: EntryPoints,
  cniConfDir: string,
  binDirs: string[],
  opts: SandboxBenchOptions,
  result: SandboxBenchResult,
  step: (text: string) => void,
  signal: AbortSignal,
): Promise<WarmStopResult | { skipped: string }> {
  if (!(await stat(LIBVIRT_SOCKET).then(() => true, () => false))) return { skipped: `no libvirtd socket at ${LIBVIRT_SOCKET}` };
  step(`warm-stop: a daemon with --vm-warm-pool 1; ${opts.warmStop} × (RunPodSandbox adopting the warm VM, StopPodSandbox, RemovePodSandbox)`);
  const dirs = daemonDirs(join(state.dir, 'warm'), cniConfDir, binDirs);
  state.stateDirs.push(dirs.stateDir);
  const daemon = await BenchDaemon.start(entry, dirs, opts.logLevel, ['--vm-warm-pool', '1']);
  state.daemons.push(daemon);
  try {
    return await warmStopPhase({
      daemon,
      tag: state.tag,
      n: opts.warmStop,
      floor: state.floor!,
      signal,
      track: (id) => state.sandboxIds.add(id),
      trackFloorNetns: (name) => state.floorNetns.add(name),
      waitForVmSides: (ids) => waitForVmSides(daemon, ids, signal),
    });
  } finally {
    await daemon.stop();
  }
}

/** Memory of the vm-stop phase's guests: the busybox guest needs little. */
const VM_STOP_MEMORY_MIB = 128;
const VM_STOP_BOOT_TIMEOUT_MS = 300_000;

/**
 * The vm-stop phase (vm_stop.ts): a daemon with one warm VM, then one with none, each running
 * `opts.vmStop` booted guests one after the other; skipped without libvirtd.
 */
async function runVmStop(
  state: BenchState,
  entry: EntryPoints,
  cniConfDir: string,
  binDirs: string[],
  opts: SandboxBenchOptions,
  step: (text: string) => void,
  signal: AbortSignal,
): Promise<VmStopCaseResult[] | { skipped: string }> {
  if (!(await stat(LIBVIRT_SOCKET).then(() => true, () => false))) return { skipped: `no libvirtd socket at ${LIBVIRT_SOCKET}` };
  step('vm-stop: building (or taking from its cache) the busybox test guest');
  const guest = await serveGuest(await buildTestGuest());
  const out: VmStopCaseResult[] = [];
  try {
    for (const [vmCase, pool] of [['warm', 1], ['cold', 0]] as const) {
      step(`vm-stop: a daemon with --vm-warm-pool ${pool}; ${opts.vmStop} × (Run, Create, Start, boot to the DHCP ACK, floor round, StopPodSandbox with the ${vmCase} VM running, Remove)`);
      const dirs = daemonDirs(join(state.dir, `vmstop-${vmCase}`), cniConfDir, binDirs);
      state.stateDirs.push(dirs.stateDir);
      const daemon = await BenchDaemon.start(entry, dirs, opts.logLevel, ['--vm-warm-pool', String(pool), '--vm-memory', `${VM_STOP_MEMORY_MIB}Mi`]);
      state.daemons.push(daemon);
      const images = new CriImageClient(dirs.socket);
      try {
        await images.call('PullImage', { image: { image: guest.url } });
        out.push(
          await vmStopPhase({
            daemon,
            case: vmCase,
            tag: state.tag,
            n: opts.vmStop,
            floor: state.floor!,
            imageUrl: guest.url,
            memoryMiB: VM_STOP_MEMORY_MIB,
            logDir: join(state.dir, 'pod-logs'),
            bootTimeoutMs: VM_STOP_BOOT_TIMEOUT_MS,
            signal,
            track: (id) => state.sandboxIds.add(id),
            trackFloorNetns: (name) => state.floorNetns.add(name),
          }),
        );
      } finally {
        images.close();
        // Whatever a failure left (a running VM, its sandbox) goes through the daemon before it stops.
        const errors: string[] = [];
        await removeThroughDaemons([daemon], state.tag, { containers: true }, errors, (what, err) => errors.push(`${what}: ${errorText(err)}`));
        for (const e of errors) step(`vm-stop cleanup: ${e}`);
      }
    }
  } finally {
    await guest.close();
  }
  return out;
}

/** Keeps the JSON readable: microsecond precision is plenty for these samples. */
function roundAll(result: SandboxBenchResult): void {
  for (const p of result.phases) {
    const f = p.floor;
    f.setupMs = roundSamples(f.setupMs);
    f.netnsAddMs = roundSamples(f.netnsAddMs);
    f.pluginAddMs = f.pluginAddMs.map(roundSamples);
    f.teardownMs = roundSamples(f.teardownMs);
    f.pluginDelMs = f.pluginDelMs.map(roundSamples);
    f.netnsDeleteMs = roundSamples(f.netnsDeleteMs);
    p.vmlet.run = roundSamples(p.vmlet.run);
    p.vmlet.stop = roundSamples(p.vmlet.stop);
    p.vmlet.remove = roundSamples(p.vmlet.remove);
    for (const k of Object.keys(p.wallMs)) p.wallMs[k] = roundSamples([p.wallMs[k]!])[0]!;
    for (const b of Object.values(p.logBreakdown ?? {})) {
      if (!b) continue;
      for (const k of Object.keys(b)) b[k] = roundSamples(b[k]!);
    }
  }
  if (result.versionMs) result.versionMs = roundSamples(result.versionMs);
  for (const c of result.list?.cases ?? []) {
    for (const k of ['clientMs', 'rawMs', 'serverMs', 'encodeMs', 'decodeMs'] as const) c[k] = roundSamples(c[k]);
    if (c.reference) c.reference = { ...c.reference, clientMs: roundSamples(c.reference.clientMs), rawMs: roundSamples(c.reference.rawMs) };
  }
}
