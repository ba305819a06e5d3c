/**
 * `npm run bench -- vm`: a real vmlet daemon (serve + netd) on a bench CNI bridge network, the
 * test guest pulled over HTTP from 127.0.0.1, and per pod, timed over the real CRI socket:
 * RunPodSandbox, CreateContainer, StartContainer (vmlet's share), then the guest's boot up to the
 * DHCP ACK vmlet's responder sends it. One warm-up pod first (reported apart). The measured VMs
 * stay up together for the memory reading, then go. If vmlet's share misses its target, a second
 * daemon with timing spans (serve_spans.ts) shows where the time goes.
 *
 * Whatever happens (failure, Ctrl-C), the bench removes its containers and sandboxes through the
 * daemon, stops it, removes by name any domain or netns of its own that is left, deletes its
 * bridge and checks that no domain, netns or QEMU process of its own remains.
 */
import { access, chmod, mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { netnsNameFor } from '../../src/network/names.js';
import { ensureLibvirtd } from '../../test/helpers/libvirtd.js';
import { ownerIdFor } from '../../src/store/owner.js';
import { BenchDaemon, REPO_ROOT, buildDaemon, daemonDirs, ownPids, removeThroughDaemons, type EntryPoints } from '../lib/daemon.js';
import { openBenchRun, errorText, now, sleep, type BenchRun } from '../lib/harness.js';
import { machineInfo } from '../lib/proc.js';
import { pool, InterruptedError } from '../lib/pool.js';
import { roundSamples } from '../lib/stats.js';
import { cniBinDirs, deleteLink, deleteNetns, linkExists, listNetns, setUpBenchNetwork, type BenchNetwork } from '../lib/network.js';
import { buildTestGuest, serveGuest, type GuestServer } from './guest_image.js';
import { cpuBetween, cpuReading, definedDomains, destroyAndUndefine, domainOwner, pausedWarmDomains, qemuPidsOf, toolVersion, vmletDomains } from './host.js';
import { LibvirtFloor } from './libvirt_floor.js';
import { CriImageClient } from './image_client.js';
import { podBreakdown } from './log_breakdown.js';
import { parseVmOptions, VM_USAGE, type VmBenchOptions } from './options.js';
import { CONTAINER_LOG_PATH, vmCreateContainerRequest, vmPodName, vmPodSandboxConfig } from './pods.js';
import { formatReport, measuredPods, shareVerdict } from './report.js';
import { RESULT_FORMAT, type MemorySample, type PodSample, type ProfileResult, type TeardownSample, type VmBenchResult } from './result.js';
import { SPANS_FILE_ENV } from './span_record.js';
import { acksFromVerboseInfo, firstDhcpAck, guestMarks, parseCriLog } from './signals.js';
import { parseSpanLines, summarizeSpans } from './span_profile.js';
import { mountPointsUnder, runMountsPhase, type MountsResult } from './mounts.js';
import { runBurstsPhase, type BurstPool, type BurstsResult } from './bursts.js';
import { runScalePhase, type AfterGc, type ScaleResult } from './scale.js';
import { GC_DIR_ENV, type GcProbeReading } from './gc_probe_record.js';

const LIBVIRT_URI = 'qemu:///system';
const execFileP = promisify(execFile);
/** How often the bench asks netd's ACK counter (PodSandboxStatus verbose) while a guest boots. */
const ACK_POLL_MS = 250;
/** After the ACK line, how long the counter may take to show it before the bench stops asking. */
const ACK_COUNTER_GRACE_MS = 5_000;
/** Quiet time before a memory reading, so the reading is not taken in the middle of a call. */
const SETTLE_MS = 1_500;
/** How long to wait for other vmlet domains to go before starting (a vmlet start removes them). */
const FOREIGN_WAIT_MS = 180_000;
const MEMORY_READINGS = 10;
const MEMORY_INTERVAL_MS = 500;

interface BenchState {
  tag: string;
  dir: string;
  network?: BenchNetwork;
  daemons: BenchDaemon[];
  imageClients: CriImageClient[];
  guest?: GuestServer;
  sandboxIds: Set<string>;
  domains: Set<string>;
  /** Loop devices made for --block-volume, detached at cleanup. */
  loops: string[];
}

/** Epoch ms with sub-ms precision, comparable with pino's `time` and the CRI log's stamps. */
const epochNow = () => performance.timeOrigin + performance.now();

/** A pod's failure: the message is the whole story (the bench's own checks, gRPC statuses). */
function podErrorText(err: unknown): string {
  if (err instanceof InterruptedError) return 'interrupted (Ctrl-C)';
  return err instanceof Error ? err.message : String(err);
}

/**
 * Waits until no vmlet domain without an owner id is defined: a vmlet daemon starting removes the
 * vmlet domains of its own owner id that its records do not own, and a daemon from before owner
 * ids (src/store/owner.ts) every vmlet domain. Other instances' domains are left alone.
 */
async function waitForNoForeignDomains(signal: AbortSignal, step: (s: string) => void): Promise<string[]> {
  const unowned = async () => {
    const names = await vmletDomains(LIBVIRT_URI);
    const owners = await Promise.all(names.map((n) => domainOwner(LIBVIRT_URI, n)));
    return names.filter((_, i) => owners[i] === undefined);
  };
  const first = await unowned();
  if (first.length === 0) return [];
  step(`other vmlet domains are defined (${first.join(', ')}); a starting vmlet daemon would remove them, so waiting up to ${FOREIGN_WAIT_MS / 1000} s for them to go`);
  const deadline = Date.now() + FOREIGN_WAIT_MS;
  while (Date.now() < deadline) {
    await sleep(2_000, signal);
    if ((await unowned()).length === 0) return first;
  }
  throw new Error(`vmlet domains without an owner id are still defined (${(await unowned()).join(', ')}); starting the bench's daemon would remove them`);
}

interface PodContext {
  state: BenchState;
  daemon: BenchDaemon;
  opts: VmBenchOptions;
  imageUrl: string;
  signal: AbortSignal;
  /** Sequential runs split each pod's time by the daemon's log lines. */
  breakdown: boolean;
}

async function guestPids(state: BenchState): Promise<number[]> {
  return [...(await qemuPidsOf(state.domains)).values()];
}

/** Waits for the guest's first DHCP ACK in netd's lines, asking netd's ACK counter alongside. */
async function waitForAck(ctx: PodContext, sample: PodSample, mark: number, deadline: number, onAck: () => Promise<void>): Promise<void> {
  const { daemon, signal } = ctx;
  const sandboxId = sample.sandboxId!;
  let scanned = mark;
  let lastPoll = -Infinity;
  let ackSeenAt: number | undefined;
  for (;;) {
    if (signal.aborted) throw new InterruptedError();
    if (!sample.ack) {
      const fresh = daemon.logs.slice(scanned);
      scanned += fresh.length;
      const ack = firstDhcpAck(fresh, sandboxId);
      if (ack) {
        sample.ack = ack;
        ackSeenAt = Date.now();
        await onAck();
      }
    }
    if (sample.ackCounterSeenAt === undefined && now() - lastPoll >= ACK_POLL_MS) {
      lastPoll = now();
      const status = await daemon.client.call<{ info?: Record<string, string> }>('PodSandboxStatus', { pod_sandbox_id: sandboxId, verbose: true });
      const acks = acksFromVerboseInfo(status.info?.info);
      if (acks !== undefined && acks >= 1) sample.ackCounterSeenAt = epochNow();
    }
    if (sample.ack && (sample.ackCounterSeenAt !== undefined || Date.now() - ackSeenAt! > ACK_COUNTER_GRACE_MS)) return;
    if (Date.now() > deadline) {
      if (sample.ack) return;
      throw new Error(`${sample.name}: no DHCP ACK from vmlet's responder within ${ctx.opts.bootTimeoutS} s of StartContainer (netd counter saw ${sample.ackCounterSeenAt ? 'one' : 'none'})`);
    }
    if (!daemon.running) throw new Error(`vmlet serve exited while ${sample.name} booted:\n${daemon.output()}`);
    await sleep(10, signal);
  }
}

/** Waits for the guest's "ready" line in the CRI log, then reads its boot marks. */
async function waitForConsole(ctx: PodContext, sample: PodSample, logPath: string, deadline: number): Promise<void> {
  for (;;) {
    const text = await readFile(logPath, 'utf8').catch(() => '');
    const marks = guestMarks(parseCriLog(text));
    sample.console = marks;
    if (marks.readyAtMs !== undefined) return;
    if (Date.now() > deadline) throw new Error(`${sample.name}: the guest did not print "VMLET-GUEST ready" within ${ctx.opts.bootTimeoutS} s (last lines: ${text.split('\n').slice(-4).join(' | ')})`);
    await sleep(200, ctx.signal);
  }
}

/** Run, Create, Start (timed), then the guest's boot up to its DHCP ACK and "ready". Fills `sample` as it goes. */
async function bringUp(ctx: PodContext, sample: PodSample): Promise<void> {
  const { state, daemon, opts } = ctx;
  const logDirectory = join(state.dir, 'pod-logs', sample.name);
  await mkdir(logDirectory, { recursive: true });
  const podConfig = vmPodSandboxConfig({ name: sample.name, uid: randomUUID(), logDirectory }, state.tag, new Date().toISOString());
  const own = await ownPids(daemon);
  const cpu0 = await cpuReading(own, await guestPids(state), now());
  const mark = daemon.logs.length;

  if (opts.warmPool > 0 && opts.concurrency === 1) sample.warmWaitMs = await waitForWarmVm(ownerIdFor(ctx.daemon.dirs.stateDir), ctx.signal);
  sample.runSentAt = epochNow();
  let t = now();
  const run = await daemon.client.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config: podConfig });
  sample.runMs = now() - t;
  sample.sandboxId = run.pod_sandbox_id;
  state.sandboxIds.add(run.pod_sandbox_id);

  const request = vmCreateContainerRequest(run.pod_sandbox_id, podConfig, ctx.imageUrl, opts.vmMemoryMiB);
  if (opts.blockVolume) {
    const dev = await blockVolume(state, sample.name);
    (request.config as Record<string, unknown>).devices = [{ container_path: '/dev/benchpvc', host_path: dev, permissions: 'mrw' }];
  }
  t = now();
  const created = await daemon.client.call<{ container_id: string }>('CreateContainer', request);
  sample.createMs = now() - t;
  sample.containerId = created.container_id;
  sample.domainName = await domainNameOf(daemon, created.container_id);
  sample.warm = sample.domainName.startsWith('vmlet-warm-');
  state.domains.add(sample.domainName);

  t = now();
  await daemon.client.call('StartContainer', { container_id: created.container_id });
  sample.startMs = now() - t;
  sample.startReturnedAt = epochNow();
  sample.vmletMs = sample.runMs + sample.createMs + sample.startMs;

  const deadline = Date.now() + opts.bootTimeoutS * 1000;
  // CPU use from Run to the ACK (read when the bench notices the ACK line, within ~10 ms).
  await waitForAck(ctx, sample, mark, deadline, async () => {
    const cpu = cpuBetween(cpu0, await cpuReading(own, await guestPids(state), now()));
    sample.otherCpuCores = cpu.otherCores;
    sample.guestCpuCores = cpu.guestCores;
  });
  sample.bootMs = sample.ack!.atMs - sample.startReturnedAt;
  sample.totalMs = sample.ack!.atMs - sample.runSentAt;

  const status = await daemon.client.call<{ status: { network?: { ip?: string } } }>('PodSandboxStatus', { pod_sandbox_id: run.pod_sandbox_id });
  sample.podIp = status.status.network?.ip;
  if (sample.ack?.yiaddr && sample.podIp && sample.ack.yiaddr !== sample.podIp) {
    throw new Error(`${sample.name}: the ACK offered ${sample.ack.yiaddr}, the pod IP is ${sample.podIp}`);
  }
  await waitForConsole(ctx, sample, join(logDirectory, CONTAINER_LOG_PATH), deadline);
  const guestIp = sample.console?.ip?.split('/')[0];
  if (guestIp !== sample.podIp) throw new Error(`${sample.name}: the guest reports ${sample.console?.ip ?? 'no address'}, the pod IP is ${sample.podIp}`);

  if (ctx.breakdown) {
    await daemon.waitForLines(mark, (l) => l.msg === 'rpc' && l.method === 'StartContainer', 1);
    sample.breakdown = podBreakdown(daemon.logs.slice(mark), run.pod_sandbox_id, {
      RunPodSandbox: sample.runMs,
      CreateContainer: sample.createMs,
      StartContainer: sample.startMs,
    });
  }
}

/**
 * StopContainer (timeout 0: destroy), RemoveContainer, StopPodSandbox, RemovePodSandbox, each
 * timed; with order `sandbox`, StopPodSandbox with the VM still running, then RemovePodSandbox.
 */
async function tearDown(daemon: BenchDaemon, sample: PodSample, order: VmBenchOptions['teardown'] = 'kubelet'): Promise<TeardownSample> {
  const timed = async (method: string, request: object) => {
    const t = now();
    await daemon.client.call(method, request);
    return now() - t;
  };
  const out: TeardownSample = { name: sample.name, stopContainerMs: NaN, removeContainerMs: NaN, stopSandboxMs: NaN, removeSandboxMs: NaN };
  if (sample.containerId && order === 'kubelet') {
    out.stopContainerMs = await timed('StopContainer', { container_id: sample.containerId, timeout: '0' });
    out.removeContainerMs = await timed('RemoveContainer', { container_id: sample.containerId });
  }
  if (sample.sandboxId) {
    out.stopSandboxMs = await timed('StopPodSandbox', { pod_sandbox_id: sample.sandboxId });
    out.removeSandboxMs = await timed('RemovePodSandbox', { pod_sandbox_id: sample.sandboxId });
  }
  return out;
}

/**
 * MEMORY_READINGS readings MEMORY_INTERVAL_MS apart; the sample keeps them all and, as its value,
 * the lowest: RSS moves by megabytes between garbage collections, the low point is the closest
 * to what the daemon holds.
 */
async function readMemory(daemon: BenchDaemon, at: string, runningVms: number, signal: AbortSignal): Promise<MemorySample> {
  const sample: MemorySample = { at, runningVms, serveSamplesKiB: [], netdSamplesKiB: [] };
  for (let i = 0; i < MEMORY_READINGS; i++) {
    if (i > 0) await sleep(MEMORY_INTERVAL_MS, signal);
    const { serve, netd } = await daemon.memory();
    if (serve) {
      sample.serveSamplesKiB.push(serve.rssKiB);
      if (!sample.serve || serve.rssKiB < sample.serve.rssKiB) sample.serve = serve;
    }
    if (netd) {
      sample.netdSamplesKiB.push(netd.rssKiB);
      if (!sample.netd || netd.rssKiB < sample.netd.rssKiB) sample.netd = netd;
    }
  }
  return sample;
}

/** A daemon's Node arguments with a preload of bench/vm/ (and `nodeFlags`) right before the main script. */
function withPreload(entry: EntryPoints, buildDir: string, name: string, nodeFlags: string[] = []): EntryPoints {
  const preload = entry.mode === 'dist' ? join(buildDir, 'bench', 'vm', `${name}.js`) : join(REPO_ROOT, 'bench', 'vm', `${name}.ts`);
  const serve = [...entry.serve];
  serve.splice(serve.length - 1, 0, ...nodeFlags, '--import', pathToFileURL(preload).href);
  return { ...entry, serve };
}

/**
 * The profile: a second daemon with timing spans runs `pods` + 1 warm-up pods through
 * Run/Create/Start (each removed right after), and after each pod one round of the libvirt floor,
 * so vmlet's domain start and the floor's are measured under the same conditions, in pairs.
 */
async function spanProfile(state: BenchState, entry: EntryPoints, buildDir: string, cniConfDir: string, binDirs: string[], opts: VmBenchOptions, imageUrl: string, guestPath: string, signal: AbortSignal): Promise<ProfileResult> {
  const out: ProfileResult = { pods: opts.profilePods, clientMs: { run: [], create: [], start: [] }, records: [], summary: [], libvirtFloor: { defineMs: [], startMs: [], destroyMs: [], undefineMs: [] } };
  const floorDir = join(state.dir, 'floor');
  await mkdir(floorDir, { recursive: true });
  const spansFile = join(state.dir, 'spans.jsonl');
  await writeFile(spansFile, '');
  const dirs = daemonDirs(join(state.dir, 'profile'), cniConfDir, binDirs);
  // The preload finds its output file in the environment the daemon inherits.
  process.env[SPANS_FILE_ENV] = spansFile;
  let daemon: BenchDaemon;
  try {
    daemon = await BenchDaemon.start(withPreload(entry, buildDir, 'serve_spans'), dirs, 'debug', vmDaemonArgs(opts));
  } finally {
    delete process.env[SPANS_FILE_ENV];
  }
  state.daemons.push(daemon);
  let floor: LibvirtFloor | undefined;
  try {
    floor = await LibvirtFloor.connect({ dir: floorDir, tag: state.tag, memoryMiB: opts.vmMemoryMiB, backingPath: guestPath, onDomain: (name) => state.domains.add(name) });
    const images = new CriImageClient(dirs.socket);
    state.imageClients.push(images);
    await images.call('PullImage', { image: { image: imageUrl } });
    for (let i = 0; i <= opts.profilePods; i++) {
      if (signal.aborted) throw new InterruptedError();
      const name = vmPodName(state.tag, 'p', i);
      const logDirectory = join(state.dir, 'pod-logs', name);
      await mkdir(logDirectory, { recursive: true });
      const podConfig = vmPodSandboxConfig({ name, uid: randomUUID(), logDirectory }, state.tag, new Date().toISOString());
      const sample: PodSample = { name, warmup: i === 0 };
      let t = now();
      const run = await daemon.client.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config: podConfig });
      out.clientMs.run.push(now() - t);
      sample.sandboxId = run.pod_sandbox_id;
      state.sandboxIds.add(run.pod_sandbox_id);
      t = now();
      const created = await daemon.client.call<{ container_id: string }>('CreateContainer', vmCreateContainerRequest(run.pod_sandbox_id, podConfig, imageUrl, opts.vmMemoryMiB));
      out.clientMs.create.push(now() - t);
      sample.containerId = created.container_id;
      state.domains.add(await domainNameOf(daemon, created.container_id));
      t = now();
      await daemon.client.call('StartContainer', { container_id: created.container_id });
      out.clientMs.start.push(now() - t);
      await tearDown(daemon, sample);
      const round = await floor.round(i);
      if (i === 0) continue; // warm-up
      for (const k of ['defineMs', 'startMs', 'destroyMs', 'undefineMs'] as const) out.libvirtFloor![k].push(round[k]);
    }
  } catch (err) {
    out.error = errorText(err);
  } finally {
    await floor?.close();
  }
  for (const c of state.imageClients) c.close();
  const code = await daemon.stop();
  if (code !== 0 && !out.error) out.error = `the profile daemon exited with ${code}`;
  out.records = parseSpanLines(await readFile(spansFile, 'utf8').catch(() => ''));
  out.summary = summarizeSpans(out.records, 1);
  if (out.records.length === 0 && !out.error) out.error = 'the span preload wrote no records (serve_spans.ts did not take effect)';
  return out;
}

/** A 64 MiB loop device on a file in the bench's directory (made untimed, before CreateContainer). */
async function blockVolume(state: BenchState, name: string): Promise<string> {
  const file = join(state.dir, `${name}.blk`);
  await writeFile(file, '');
  await truncate(file, 64 * 1024 * 1024);
  const dev = execFileSync('losetup', ['-f', '--show', file], { encoding: 'utf8' }).trim();
  state.loops.push(dev);
  return dev;
}

async function cleanup(state: BenchState): Promise<VmBenchResult['cleanup']> {
  const errors: string[] = [];
  const note = (what: string, err: unknown) => errors.push(`${what}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  for (const c of state.imageClients) c.close();
  await removeThroughDaemons(state.daemons, state.tag, { containers: true }, errors, note);
  await state.guest?.close().catch((err: unknown) => note('close the image server', err));

  // What the daemon could not remove (or a crash left): by name, only the bench's own.
  const prefixes = [...state.sandboxIds].map((id) => `vmlet-${id.slice(0, 12)}-`);
  const ours = (name: string) => state.domains.has(name) || prefixes.some((p) => name.startsWith(p));
  const leftDomains = async () => (await definedDomains(LIBVIRT_URI).catch((err: unknown) => (note('list domains', err), [] as string[]))).filter(ours);
  for (const name of await leftDomains()) {
    errors.push(`domain ${name} was still defined after the daemon's teardown; removed with virsh`);
    await destroyAndUndefine(LIBVIRT_URI, name).catch((err: unknown) => note(`remove domain ${name}`, err));
  }
  const netnsNames = new Set([...state.sandboxIds].map((id) => netnsNameFor(id)));
  for (const name of await listNetns()) {
    if (!netnsNames.has(name)) continue;
    errors.push(`netns ${name} was still there after the daemon's teardown; deleted`);
    await deleteNetns(name).catch((err: unknown) => note(`delete netns ${name}`, err));
  }
  for (const dev of state.loops) {
    try {
      execFileSync('losetup', ['-d', dev]);
    } catch (err) {
      note(`detach ${dev}`, err);
    }
  }
  if (state.network) await deleteLink(state.network.bridge).catch((err: unknown) => note(`delete bridge ${state.network!.bridge}`, err));

  const domainsNow = await leftDomains();
  const allOurs = new Set([...state.domains, ...domainsNow]);
  const result: VmBenchResult['cleanup'] = {
    leftoverDomains: domainsNow,
    leftoverNetns: (await listNetns()).filter((n) => netnsNames.has(n)),
    leftoverQemuPids: [...(await qemuPidsOf(allOurs)).values()],
    bridgeLeft: state.network ? await linkExists(state.network.bridge) : false,
    errors,
  };
  // The daemons' volumes directories are mounts of their own (shared, for virtiofsd); a daemon
  // that stops with no export left unmounts them. Anything still mounted under the temp dir is a
  // leftover: reported, then detached so the directory can go.
  const mounts = await mountPointsUnder(state.dir).catch(() => [] as string[]);
  result.leftoverMounts = mounts;
  for (const m of [...mounts].reverse()) await execFileP('umount', ['--lazy', m]).catch((err: unknown) => note(`unmount ${m}`, err));
  await rm(state.dir, { recursive: true, force: true }).catch((err: unknown) => note(`remove ${state.dir}`, err));
  return result;
}

function roundAll(result: VmBenchResult): void {
  const r3 = (v: number | undefined) => (v === undefined ? undefined : roundSamples([v])[0]);
  for (const p of result.pods) {
    for (const k of ['runMs', 'createMs', 'startMs', 'vmletMs', 'bootMs', 'totalMs', 'runSentAt', 'startReturnedAt', 'ackCounterSeenAt', 'otherCpuCores', 'guestCpuCores'] as const) {
      if (p[k] !== undefined) p[k] = Number.isFinite(p[k]) ? r3(p[k]) : p[k];
    }
    if (p.breakdown) for (const k of Object.keys(p.breakdown)) p.breakdown[k] = Number.isFinite(p.breakdown[k]) ? r3(p.breakdown[k])! : p.breakdown[k]!;
  }
  for (const t of result.teardown) {
    for (const k of ['stopContainerMs', 'removeContainerMs', 'stopSandboxMs', 'removeSandboxMs'] as const) if (Number.isFinite(t[k])) t[k] = r3(t[k])!;
  }
  if (result.profile) {
    const c = result.profile.clientMs;
    result.profile.clientMs = { run: roundSamples(c.run), create: roundSamples(c.create), start: roundSamples(c.start) };
  }
}

export async function runVmBench(argv: readonly string[]): Promise<number> {
  const opened = openBenchRun({
    argv,
    parse: (args, startedAt) => parseVmOptions(args, REPO_ROOT, startedAt),
    usage: VM_USAGE,
    rootReason: 'the VM bench creates network namespaces, bridges and libvirt domains',
    prefix: '[bench vm]',
    interrupt: {
      first: 'letting calls in flight finish, then cleaning up (VMs, sandboxes, daemon, bridge)',
      again: 'still cleaning up; please wait, the cleanup keeps this host tidy',
    },
  });
  if (typeof opened === 'number') return opened;
  const { run, opts, startedAt, jsonPath } = opened;
  const { signal, step, checkAbort } = run;

  const tag = randomBytes(3).toString('hex');
  const state: BenchState = {
    tag,
    // 0711: QEMU's user (--qemu-user) must traverse it to reach the VM files below.
    dir: await mkdtemp(join(tmpdir(), 'vmlet-bench-vm-')).then(async (d) => (await chmod(d, 0o711), d)),
    daemons: [],
    imageClients: [],
    sandboxIds: new Set(),
    domains: new Set(),
    loops: [],
  };
  const result: VmBenchResult = {
    format: RESULT_FORMAT,
    startedAt: startedAt.toISOString(),
    finishedAt: '',
    options: opts,
    machine: {
      ...(await machineInfo(state.dir)),
      kvm: 'TCG (--kvm off)',
      libvirtd: await toolVersion('libvirtd', ['--version']),
      qemu: await toolVersion('qemu-system-x86_64', ['--version']),
      loadavgStart: loadavg(),
      loadavgEnd: [],
    },
    runtime: { mode: opts.runtime },
    network: { bridge: '', subnet: '', conflist: {} },
    image: { path: '', bytes: 0, url: '', pullMs: NaN },
    pods: [],
    memory: [],
    teardown: [],
    foreignDomainsAtStart: [],
    cleanup: { leftoverDomains: [], leftoverNetns: [], leftoverQemuPids: [], bridgeLeft: false, errors: [] },
  };

  try {
    step('checking libvirtd and virtlogd (started if nothing answers)');
    await ensureLibvirtd();
    result.foreignDomainsAtStart = await waitForNoForeignDomains(signal, step);

    const binDirs = await cniBinDirs();
    const { network, cniConfDir, conflist } = await setUpBenchNetwork(state.dir, {
      networkName: `vmlet-bench-vm-${tag}`,
      bridge: `vbvm${tag}`,
      fileName: '10-vmlet-bench-vm.conflist',
      ...(opts.subnetPrefix !== undefined ? { subnetPrefix: opts.subnetPrefix } : {}),
    });
    state.network = network;
    result.network = { bridge: network.bridge, subnet: network.subnet, conflist };

    step('building (or reusing) the test guest: test-guests/build-busybox.sh');
    const guestPath = await buildTestGuest();
    state.guest = await serveGuest(guestPath);
    result.image = { path: guestPath, bytes: state.guest.bytes, url: state.guest.url, pullMs: NaN };
    checkAbort();

    const buildDir = join(state.dir, 'build');
    const { entry, runtime } = await buildDaemon(opts.runtime, buildDir, step);
    result.runtime = runtime;
    checkAbort();

    const phases = new Set(opts.phases);
    if (phases.has('pods') || (phases.has('mounts') && opts.mountRounds > 0)) {
      await mainDaemonPhases(state, result, opts, entry, buildDir, cniConfDir, binDirs, guestPath, run);
    }
    if (phases.has('bursts') && opts.bursts > 0) {
      checkAbort();
      const ctx = { state, opts, imageUrl: state.guest.url, signal };
      result.bursts = await burstsPhase(state, ctx, entry, cniConfDir, binDirs, step);
      if (result.bursts.error) throw new Error(`bursts phase: ${result.bursts.error}`);
    }
    if (phases.has('scale')) {
      checkAbort();
      result.scale = await scalePhase(state, opts, state.guest.url, entry, buildDir, cniConfDir, binDirs, signal, step);
      if (result.scale.error) throw new Error(`scale phase: ${result.scale.error}`);
    }
  } catch (err) {
    result.error = errorText(err);
  } finally {
    step('cleaning up');
    result.cleanup = await cleanup(state);
    result.finishedAt = new Date().toISOString();
    result.machine.loadavgEnd = loadavg();
    run.close();
  }

  roundAll(result);
  const c = result.cleanup;
  const failedPods = result.pods.some((p) => p.error !== undefined);
  return run.finish(jsonPath, result, formatReport(result), (c.leftoverMounts?.length ?? 0) > 0 || c.leftoverDomains.length > 0 || c.leftoverNetns.length > 0 || c.leftoverQemuPids.length > 0 || c.bridgeLeft || failedPods);
}

/**
 * The phases on the main daemon (log level debug, the bench's warm pool): the warm-up and
 * measured pods with their memory readings and teardown (`pods`), the mounts phase, then the
 * daemon stops and, when vmlet's share missed (or always), the span profile.
 */
async function mainDaemonPhases(state: BenchState, result: VmBenchResult, opts: VmBenchOptions, entry: EntryPoints, buildDir: string, cniConfDir: string, binDirs: string[], guestPath: string, run: BenchRun): Promise<void> {
  const { signal, step, checkAbort } = run;
  const phases = new Set(opts.phases);
  const tag = state.tag;
  const guest = state.guest!;
  step(`starting vmlet serve (--kvm off, log level debug, ${vmDaemonArgs(opts).join(' ')})`);
  const dirs = daemonDirs(join(state.dir, 'main'), cniConfDir, binDirs);
  const daemon = await BenchDaemon.start(entry, dirs, 'debug', vmDaemonArgs(opts));
  state.daemons.push(daemon);
  result.memory.push(await readMemory(daemon, 'before any pod', 0, signal));

  const images = new CriImageClient(dirs.socket);
  state.imageClients.push(images);
  let t = now();
  const pulled = await images.call<{ image_ref: string }>('PullImage', { image: { image: guest.url } });
  result.image.pullMs = now() - t;
  result.image.imageRef = pulled.image_ref;

  const ctx: PodContext = { state, daemon, opts, imageUrl: guest.url, signal, breakdown: opts.concurrency === 1 };
  if (phases.has('pods')) {
    step('warm-up pod (not counted): Run, Create, Start, boot, then removed');
    const warm: PodSample = { name: vmPodName(tag, 'w', 0), warmup: true };
    result.pods.push(warm);
    try {
      await bringUp(ctx, warm);
    } catch (err) {
      warm.error = podErrorText(err);
      throw err;
    } finally {
      // A failure here must not hide the bring-up's own error; the cleanup retries what is left.
      if (warm.sandboxId) await tearDown(daemon, warm).catch((err: unknown) => step(`warm-up teardown failed: ${errorText(err)}`));
    }
    await sleep(SETTLE_MS, signal);
    result.memory.push(await readMemory(daemon, 'baseline: warm-up pod removed', 0, signal));

    step(`${opts.pods} measured pod(s), ${opts.concurrency === 1 ? 'one after the other' : `${opts.concurrency} at a time`}; each VM stays up`);
    let running = 0;
    t = now();
    const samples = await pool(opts.pods, opts.concurrency, signal, async (i) => {
      const sample: PodSample = { name: vmPodName(tag, 'm', i), warmup: false };
      result.pods.push(sample);
      try {
        await bringUp(ctx, sample);
      } catch (err) {
        sample.error = podErrorText(err);
        if (!opts!.keepGoing || err instanceof InterruptedError) throw err;
        step(`${sample.name} failed (going on): ${sample.error.split('\n')[0]}`);
        if (sample.sandboxId) await tearDown(daemon, sample).catch(() => undefined);
        return sample;
      }
      running++;
      step(`${sample.name}: share ${sample.vmletMs!.toFixed(1)} ms (${sample.warm ? 'warm' : 'cold'} VM), boot ${sample.bootMs!.toFixed(0)} ms, ${running} VM(s) up`);
      if (opts!.concurrency === 1) {
        await sleep(SETTLE_MS, signal);
        result.memory.push(await readMemory(daemon, `${running} VM(s) running`, running, signal));
      }
      return sample;
    });
    result.bringUpWallMs = now() - t;
    if (opts.concurrency > 1) {
      await sleep(SETTLE_MS, signal);
      result.memory.push(await readMemory(daemon, `${running} VM(s) running`, running, signal));
    }

    step(`removing the ${samples.length} pod(s) through the CRI`);
    for (const s of samples) if (s.sandboxId && s.error === undefined) result.teardown.push(await tearDown(daemon, s, opts.teardown));
    await sleep(SETTLE_MS, signal);
    result.memory.push(await readMemory(daemon, 'after all removed', 0, signal));
  }
  if (phases.has('mounts') && opts.mountRounds > 0) {
    checkAbort();
    result.mounts = await mountsPhase(state, ctx, entry, cniConfDir, binDirs, step);
    if (result.mounts.error) throw new Error(`mounts phase: ${result.mounts.error}`);
  }
  // An open client connection holds serve's graceful stop until its gRPC grace runs out.
  images.close();
  const code = await daemon.stop();
  if (code !== 0) throw new Error(`vmlet serve exited with ${code}:\n${daemon.output()}`);

  const verdict = shareVerdict(measuredPods(result));
  if (phases.has('pods') && (opts.profile === 'always' || (opts.profile === 'auto' && verdict === 'MISS'))) {
    checkAbort();
    step(`profile: a daemon with timing spans, 1 + ${opts.profilePods} pods (Run/Create/Start, removed right after), each followed by a libvirt floor round`);
    result.profile = await spanProfile(state, entry, buildDir, cniConfDir, binDirs, opts, guest.url, guestPath, signal);
  }
}

/**
 * The mounts phase (mounts.ts): warm pods on the main daemon, cold ones on a second daemon with
 * `--vm-warm-pool 0` started for it (its own state dir, same network and image), stopped after.
 */
async function mountsPhase(state: BenchState, ctx: PodContext, entry: EntryPoints, cniConfDir: string, binDirs: string[], step: (text: string) => void): Promise<MountsResult> {
  const { opts, signal, daemon } = ctx;
  const coldOpts = { ...opts, warmPool: 0 };
  step(`mounts phase: ${opts.mountRounds} round(s) of warm/cold VMs with and without kubelet's two usual mounts, and warm VMs with one block volume; a second daemon with --vm-warm-pool 0 for the cold ones`);
  const cold = await BenchDaemon.start(entry, daemonDirs(join(state.dir, 'cold'), cniConfDir, binDirs), 'debug', vmDaemonArgs(coldOpts));
  state.daemons.push(cold);
  const images = new CriImageClient(cold.dirs.socket);
  state.imageClients.push(images);
  try {
    await images.call('PullImage', { image: { image: ctx.imageUrl } });
    return await runMountsPhase({
      ...(opts.warmPool > 0 ? { warmDaemon: daemon } : {}),
      coldDaemon: cold,
      dir: state.dir,
      tag: state.tag,
      imageUrl: ctx.imageUrl,
      memoryMiB: opts.vmMemoryMiB,
      rounds: opts.mountRounds,
      signal,
      now,
      waitForWarmVm: () => waitForWarmVm(ownerIdFor(daemon.dirs.stateDir), signal),
      blockVolume: (name) => blockVolume(state, name),
      domainNameOf,
      onSandbox: (id) => state.sandboxIds.add(id),
      onDomain: (name) => state.domains.add(name),
      step,
    });
  } finally {
    images.close();
    const code = await cold.stop();
    if (code !== 0) throw new Error(`the cold daemon exited with ${code}:\n${cold.output()}`);
  }
}

/**
 * The bursts phase (bursts.ts): per warm-pool setting a daemon of its own (own state dir, same
 * network and image), started and stopped by the phase; the main daemon keeps running, idle.
 */
async function burstsPhase(state: BenchState, ctx: Pick<PodContext, 'opts' | 'signal' | 'imageUrl'>, entry: EntryPoints, cniConfDir: string, binDirs: string[], step: (text: string) => void): Promise<BurstsResult> {
  const { opts, signal } = ctx;
  step(`bursts phase: ${opts.bursts} pods back-to-back, then ${opts.bursts} at once, with the default warm pool and with a demand-sized one, each on a daemon of its own`);
  const clients = new Map<BenchDaemon, CriImageClient>();
  return runBurstsPhase({
    startDaemon: async (p: BurstPool, i: number) => {
      const args = ['--vm-memory', `${opts.vmMemoryMiB}Mi`, ...p.args];
      step(`bursts: starting a daemon with ${args.join(' ')}`);
      const daemon = await BenchDaemon.start(entry, daemonDirs(join(state.dir, `burst${i}`), cniConfDir, binDirs), 'info', args);
      state.daemons.push(daemon);
      const images = new CriImageClient(daemon.dirs.socket);
      state.imageClients.push(images);
      clients.set(daemon, images);
      await images.call('PullImage', { image: { image: ctx.imageUrl } });
      return daemon;
    },
    stopDaemon: async (daemon) => {
      clients.get(daemon)?.close();
      const code = await daemon.stop();
      if (code !== 0) throw new Error(`a bursts daemon exited with ${code}:\n${daemon.output()}`);
    },
    idleWarmDomains: (daemon) => pausedWarmDomains(LIBVIRT_URI, ownerIdFor(daemon.dirs.stateDir)),
    warmNetnsOf: async (daemon) => {
      const prefix = `vmlet-warm-${ownerIdFor(daemon.dirs.stateDir).slice(0, 8)}`;
      return (await listNetns()).filter((n) => n.startsWith(prefix));
    },
    ...phaseCommon(state, signal, step),
    imageUrl: ctx.imageUrl,
    memoryMiB: opts.vmMemoryMiB,
    pods: opts.bursts,
  });
}

/** What the bursts and scale phases get alike: the bench's lookups, its clock, and its cleanup records. */
function phaseCommon(state: BenchState, signal: AbortSignal, step: (text: string) => void) {
  return {
    qemuPidsOf: (domains: string[]) => qemuPidsOf(domains),
    domainNameOf,
    dir: state.dir,
    tag: state.tag,
    signal,
    now,
    onSandbox: (id: string) => void state.sandboxIds.add(id),
    onDomain: (name: string) => void state.domains.add(name),
    step,
  };
}

/**
 * The scale phase (scale.ts): a daemon of its own at log level info (as in production), --scale-memory
 * guests, the bench's warm pool; started and stopped by the phase.
 */
async function scalePhase(state: BenchState, opts: VmBenchOptions, imageUrl: string, entry: EntryPoints, buildDir: string, cniConfDir: string, binDirs: string[], signal: AbortSignal, step: (text: string) => void): Promise<ScaleResult> {
  let images: CriImageClient | undefined;
  const gcDir = join(state.dir, 'gc-probe');
  await mkdir(gcDir, { recursive: true });
  step(`scale phase: ${opts.scalePods} VM pods of ${opts.scaleMemoryMiB} MiB, ${opts.scaleBatch} at a time; idle CPU, RSS and list/status latencies at 1 and at ${opts.scalePods}`);
  return runScalePhase({
    startDaemon: async () => {
      const args = ['--vm-memory', `${opts.scaleMemoryMiB}Mi`, '--vm-warm-pool', String(opts.warmPool)];
      step(`scale: starting a daemon with ${args.join(' ')} (log level info)`);
      // serve and netd (it inherits serve's execArgv) load the GC probe, which finds its dir here.
      process.env[GC_DIR_ENV] = gcDir;
      let daemon: BenchDaemon;
      try {
        daemon = await BenchDaemon.start(withPreload(entry, buildDir, 'gc_probe', ['--expose-gc']), daemonDirs(join(state.dir, 'scale'), cniConfDir, binDirs), 'info', args);
      } finally {
        delete process.env[GC_DIR_ENV];
      }
      state.daemons.push(daemon);
      images = new CriImageClient(daemon.dirs.socket);
      state.imageClients.push(images);
      await images.call('PullImage', { image: { image: imageUrl } });
      return daemon;
    },
    stopDaemon: async (daemon) => {
      images?.close();
      const code = await daemon.stop();
      if (code !== 0) throw new Error(`the scale daemon exited with ${code}:\n${daemon.output()}`);
    },
    afterGc: (pid) => readAfterGc(gcDir, pid, signal),
    ...phaseCommon(state, signal, step),
    imageUrl,
    pods: opts.scalePods,
    batch: opts.scaleBatch,
    idleSeconds: opts.scaleIdleS,
    callsPerMethod: opts.scaleCalls,
    memoryMiB: opts.scaleMemoryMiB,
    bootTimeoutS: opts.bootTimeoutS,
  });
}

/**
 * Asks the GC probe in `pid` (only if it announced itself) for a full collection and reads what
 * it wrote; undefined when the probe is not there or does not answer within 10 s.
 */
async function readAfterGc(dir: string, pid: number, signal: AbortSignal): Promise<AfterGc | undefined> {
  try {
    await access(join(dir, `${pid}.ready`));
  } catch {
    return undefined;
  }
  const sent = Date.now();
  process.kill(pid, 'SIGUSR2');
  while (Date.now() - sent < 10_000) {
    await sleep(100, signal);
    const text = await readFile(join(dir, `${pid}.json`), 'utf8').catch(() => '');
    if (text === '') continue;
    const r = JSON.parse(text) as GcProbeReading;
    if (r.at < sent) continue;
    return { rssKiB: Math.round(r.rss / 1024), heapUsedKiB: Math.round(r.heapUsed / 1024), externalKiB: Math.round(r.external / 1024) };
  }
  return undefined;
}

/** The daemon flags the VM bench runs with: guests of the measured size, and the warm pool. */
function vmDaemonArgs(opts: VmBenchOptions): string[] {
  return ['--vm-memory', `${opts.vmMemoryMiB}Mi`, '--vm-warm-pool', String(opts.warmPool)];
}

/** The container's libvirt domain name, from ContainerStatus (verbose carries the domain XML). */
async function domainNameOf(daemon: BenchDaemon, containerId: string): Promise<string> {
  const status = await daemon.client.call<{ info: Record<string, string> }>('ContainerStatus', { container_id: containerId, verbose: true });
  const xml = (JSON.parse(status.info.info ?? '{}') as { domainXml?: string }).domainXml ?? '';
  const name = /<name>([^<]+)<\/name>/.exec(xml)?.[1];
  if (!name) throw new Error(`ContainerStatus of ${containerId} names no domain`);
  return name;
}

/** Waits (untimed, up to 120 s) until the daemon has an idle warm VM; returns how long that took. */
async function waitForWarmVm(owner: string, signal: AbortSignal): Promise<number> {
  const started = now();
  while ((await pausedWarmDomains(LIBVIRT_URI, owner)).length === 0) {
    if (now() - started > 120_000) throw new Error('no warm VM became idle within 120 s');
    await sleep(100, signal);
  }
  return now() - started;
}
