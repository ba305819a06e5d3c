/**
 * `npm run bench -- peer`: vmlet against containerd (Debian's package, + runc) on the same
 * conflist, driven by the same client, in one run: RunPodSandbox / StopPodSandbox /
 * RemovePodSandbox over N pods, Version, Status, PodSandboxStatus, ListPodSandbox and
 * ListContainers with M pods, and the real crictl (`crictl version`, `info`, `inspectp`, `pods`,
 * `ps -a`). Calls to the two runtimes and the raw CNI floor alternate
 * pod by pod, so a shared machine's load falls on all three alike.
 *
 * containerd runs with its own root, state, socket and config (test/helpers/containerd.ts), the
 * bench's CNI conf dir, `restrict_oom_score_adj = true`, and a pause image built locally and
 * imported with `ctr` (no registry is reachable). Cleanup removes every bench pod from both,
 * stops both daemons, and deletes the floor's namespaces and the bridge.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ExecPluginRunner } from '../../src/network/cni/exec.js';
import { startContainerd, type TestContainerd } from '../../test/helpers/containerd.js';
import { findCriTools } from '../../test/helpers/cri_tools.js';
import { buildOciArchive, CRITEST_IMAGES, PAUSE_IMAGE } from '../../test/helpers/oci_images.js';
import { CriRuntimeClient } from '../lib/cri_client.js';
import { BenchDaemon, REPO_ROOT, buildDaemon, daemonDirs, removeThroughDaemons, type LogLine } from '../lib/daemon.js';
import { errorText, now, openBenchRun } from '../lib/harness.js';
import { cniBinDirs, deleteLink, deleteNetns, linkExists, listNetns, setUpBenchNetwork, type BenchNetwork } from '../lib/network.js';
import { RUN_LABEL } from '../lib/pods.js';
import { pool } from '../lib/pool.js';
import { UsageError, assignableAddresses, defaultJsonPath, intOption, oneOfOption, parseBenchArgs, subnetOption, subnetPrefixOption } from '../lib/options.js';
import { roundSamples } from '../lib/stats.js';
import { cpuSnapshot } from '../lib/proc.js';
import { CniFloor, type FloorAttachment } from '../sandbox/floor.js';
import { podIdentity, podSandboxConfig } from '../sandbox/pods.js';
import { waitForVmSides } from '../sandbox/run.js';
import { containerStatusRows } from './container_rows.js';
import { emptySamples, formatPeerReport, MAX_READY_LIST_PODS, PEER_RESULT_FORMAT, type PeerOptions, type PeerResult, type RuntimeSamples } from './report.js';

const execFileP = promisify(execFile);
const LIBVIRT_SOCKET = '/run/libvirt/libvirt-sock';
const warmReady = (l: LogLine) => l.msg === 'warm VM ready';
const warmReturned = (l: LogLine) => l.msg === 'unused warm VM returned to the pool';

/**
 * StopPodSandbox of a sandbox that adopted a warm VM and never used it, beside containerd's Stop
 * and a floor round in each round. Each round first waits (untimed) for an idle warm VM.
 */
async function warmStopRounds(
  daemon: BenchDaemon,
  peer: Side,
  rounds: number,
  tag: string,
  floor: CniFloor,
  floorRound: (i: number) => Promise<FloorAttachment>,
  result: PeerResult,
  signal: AbortSignal,
): Promise<void> {
  const count = (match: (l: LogLine) => boolean) => daemon.logs.filter(match).length;
  for (let i = 0; i < rounds; i++) {
    const w0 = now();
    // An idle VM, and the previous round's VM back (until then the pool may have none idle).
    while (count(warmReady) + count(warmReturned) <= i || count(warmReturned) < i) {
      if (signal.aborted) throw new Error('interrupted');
      if (now() - w0 > 180_000) throw new Error('no idle warm VM within 180 s');
      await new Promise((r) => setTimeout(r, 20));
    }
    const { pod_sandbox_id: id } = await daemon.client.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config: podConfig(tag, 'ws', i) });
    const st = await daemon.client.call<{ info: Record<string, string> }>('PodSandboxStatus', { pod_sandbox_id: id, verbose: true });
    const netnsPath = (JSON.parse(st.info.info ?? '{}') as { netnsPath?: string }).netnsPath ?? '';
    if (!netnsPath.includes('vmlet-warm-')) throw new Error(`sandbox ${id} did not adopt a warm netns (${netnsPath || 'none'})`);
    const { pod_sandbox_id: peerId } = await peer.client.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config: podConfig(tag, 'wsc', i) });
    await waitForVmSides(daemon, [id], signal);
    // The claim started a refill (a new QEMU, heavy under TCG): the floor and both Stops wait for
    // it, until the pool is full again (made + returned = claims + 1; a claim while the previous
    // Stop's VM was still on its way back starts no refill: that VM fills the pool).
    const r0 = now();
    while (count(warmReady) + count(warmReturned) < i + 2 && now() - r0 < 180_000) {
      if (signal.aborted) throw new Error('interrupted');
      await new Promise((r) => setTimeout(r, 20));
    }
    result.floor.teardownWarm.push((await floor.teardown(await floorRound(i))).totalMs);
    result.vmlet.stopWarm.push((await timed(() => daemon.client.call('StopPodSandbox', { pod_sandbox_id: id })))[1]);
    peer.samples.stopWarm.push((await timed(() => peer.client.call('StopPodSandbox', { pod_sandbox_id: peerId })))[1]);
    await daemon.client.call('RemovePodSandbox', { pod_sandbox_id: id });
    await peer.client.call('RemovePodSandbox', { pod_sandbox_id: peerId });
  }
}

/**
 * Addresses kept free beside both runtimes' list pods (the floor's and the Run phase's leftovers):
 * 2 × 120 list pods fit a /24's 253; more need a wider `--subnet`.
 */
const LIST_POD_ADDRESS_MARGIN = 13;
const MAX_LIST_PODS = 1000;

export const PEER_USAGE = `usage: npm run bench -- peer [options]   (as root; needs containerd, runc and ctr from Debian, gcc, ../shared/cri-tools/crictl)

  --n <count>              pods for Run/Stop/Remove, one at a time (default 20)
  --list-pods <count>      pods up for ListPodSandbox, ListContainers, \`crictl pods\`, \`crictl ps -a\` (default 100,
                           at most 1000; both runtimes' pods take addresses of the bench network: a /24
                           holds 120 each, more need --subnet, e.g. a /21 for 1000; pods past 500 are
                           stopped once made, as one bridge holds 1024 ports)
  --crictl-calls <count>   crictl runs per row and runtime (default 20)
  --version-calls <count>  Version, Status and PodSandboxStatus calls per runtime (default 100)
  --vm-warm-pool <count>   vmlet's --vm-warm-pool (default 0: sandboxes without VMs, as pause containers are)
  --container-rows yes|no  ContainerStatus and \`crictl inspect\` of a created container on each side: the
                           test guest's VM on vmlet (needs libvirtd; the guest is built or taken from its
                           cache), the pause image on containerd (default yes)
  --warm-stop <count>      rounds of Stop of a sandbox whose warm VM was never used, on a second vmlet
                           with --vm-warm-pool 1 (needs libvirtd; default 5, 0 skips)
  --runtime dist|tsx       how vmlet runs (default dist: tsc build, plain node)
  --json <file>            results (default bench/results/peer-<time>.json)
  --subnet-prefix <a.b.c>  the bench network's /24 (a prefix of 198.18.0.0/15; default: a free 198.19.x)
  --subnet <cidr>          the bench network instead, /16 to /24 inside 198.18.0.0/15 (e.g. 198.19.80.0/21)
  --help
`;

export function parsePeerOptions(argv: readonly string[], repoRoot: string, startedAt: Date): PeerOptions | undefined {
  const args = parseBenchArgs(argv, { 'warm-stop': 'string', n: 'string', 'list-pods': 'string', 'crictl-calls': 'string', 'version-calls': 'string', 'vm-warm-pool': 'string', runtime: 'string', json: 'string', 'subnet-prefix': 'string', subnet: 'string', 'container-rows': 'string' });
  if (args === undefined) return undefined;
  const { str } = args;
  if (str('subnet') !== undefined && str('subnet-prefix') !== undefined) throw new UsageError('--subnet and --subnet-prefix exclude each other');
  const subnet = str('subnet') === undefined ? undefined : subnetOption(str('subnet')!);
  // Both runtimes hold their list pods at once, each pod an address of the bench network.
  const listPods = intOption(str('list-pods'), 'list-pods', 100, 1, MAX_LIST_PODS);
  const addresses = assignableAddresses(subnet ?? '0.0.0.0/24');
  if (2 * listPods + LIST_POD_ADDRESS_MARGIN > addresses) {
    throw new UsageError(`--list-pods ${listPods} needs ${2 * listPods + LIST_POD_ADDRESS_MARGIN} addresses; the bench network has ${addresses}: give a wider --subnet`);
  }
  return {
    n: intOption(str('n'), 'n', 20, 1, 1000),
    listPods,
    crictlCalls: intOption(str('crictl-calls'), 'crictl-calls', 20, 1, 10_000),
    versionCalls: intOption(str('version-calls'), 'version-calls', 100, 1, 100_000),
    warmStop: intOption(str('warm-stop'), 'warm-stop', 5, 0, 1000),
    containerRows: oneOfOption(str('container-rows'), 'container-rows', ['yes', 'no'] as const, 'yes') === 'yes',
    vmWarmPool: intOption(str('vm-warm-pool'), 'vm-warm-pool', 0, 0, 16),
    runtime: oneOfOption(str('runtime'), 'runtime', ['dist', 'tsx'] as const, 'dist'),
    json: str('json') ?? defaultJsonPath(repoRoot, 'peer', startedAt),
    ...(str('subnet-prefix') !== undefined ? { subnetPrefix: subnetPrefixOption(str('subnet-prefix'), '198.19.60') } : {}),
    ...(subnet !== undefined ? { subnet } : {}),
  };
}

/** One runtime as the bench drives it. */
interface Side {
  name: 'vmlet' | 'containerd';
  client: CriRuntimeClient;
  socket: string;
  samples: RuntimeSamples;
}

interface PeerState {
  tag: string;
  dir: string;
  network?: BenchNetwork;
  daemon?: BenchDaemon;
  /** The warm-stop phase's vmlet, with --vm-warm-pool 1. */
  warmDaemon?: BenchDaemon;
  containerd?: TestContainerd;
  containerdClient?: CriRuntimeClient;
  floor?: CniFloor;
  floorNetns: Set<string>;
}

/** A pod config both runtimes accept alike: kubelet's shape, without a cgroup parent (runc would leave its cgroup dirs behind). */
function podConfig(tag: string, phase: string, i: number): Record<string, unknown> {
  const config = podSandboxConfig(podIdentity(tag, phase, i, randomUUID()), tag, i, new Date().toISOString());
  const linux = config.linux as Record<string, unknown>;
  delete linux.cgroup_parent;
  return config;
}

/** A window in which a runtime counts as quiet if its processes used at most QUIET_MAX_TICKS. */
const QUIET_WINDOW_MS = 300;
const QUIET_MAX_TICKS = 2;

/**
 * Waits (up to 60 s) until each runtime's processes, with their reaped children, used at most
 * 2 ticks (20 ms of CPU) in each of two 300 ms windows in a row: work a phase left behind (vmlet
 * wires a sandbox's VM side and deletes a stopped sandbox's netns after replying) must not land
 * in the next phase's per-call timings. Returns the wait per runtime (ms; 60000 = never quiet).
 */
async function waitQuiet(runtimes: Record<string, () => Promise<number[]>>, signal: AbortSignal): Promise<Record<string, number>> {
  const waits: Record<string, number> = {};
  for (const [name, pidsOf] of Object.entries(runtimes)) {
    const t0 = now();
    let quietWindows = 0;
    while (quietWindows < 2 && now() - t0 < 60_000) {
      if (signal.aborted) throw new Error('interrupted');
      const pids = await pidsOf();
      const a = await cpuSnapshot(pids);
      await new Promise((r) => setTimeout(r, QUIET_WINDOW_MS));
      const b = await cpuSnapshot(pids);
      quietWindows = b.ownTicks - a.ownTicks <= QUIET_MAX_TICKS ? quietWindows + 1 : 0;
    }
    waits[name] = Math.round(now() - t0);
  }
  return waits;
}

async function timed<T>(work: () => Promise<T>): Promise<[T, number]> {
  const t = now();
  const value = await work();
  return [value, now() - t];
}

export async function runPeerBench(argv: readonly string[]): Promise<number> {
  const opened = openBenchRun({
    argv,
    parse: (args, startedAt) => parsePeerOptions(args, REPO_ROOT, startedAt),
    usage: PEER_USAGE,
    rootReason: 'the peer bench starts containerd and creates network namespaces and a bridge',
    prefix: '[peer]',
    interrupt: { first: 'letting calls in flight finish, then cleaning up', again: 'still cleaning up, please wait' },
  });
  if (typeof opened === 'number') return opened;
  const { run, opts, startedAt, jsonPath } = opened;
  const { signal, step, checkAbort } = run;
  const tag = randomBytes(3).toString('hex');
  const state: PeerState = {
    tag,
    dir: await mkdtemp(join(tmpdir(), 'vmlet-peer-')).then(async (d) => (await chmod(d, 0o711), d)),
    floorNetns: new Set(),
  };
  const result: PeerResult = {
    format: PEER_RESULT_FORMAT,
    startedAt: startedAt.toISOString(),
    finishedAt: '',
    options: opts,
    loadavg: { start: loadavg(), end: [] },
    versions: { containerd: '', crictl: '' },
    network: { conflist: {} },
    containerd: emptySamples(),
    vmlet: emptySamples(),
    floor: { setup: [], teardown: [], teardownWarm: [] },
    crictlStart: [],
    quietWaits: {},
    cleanup: { errors: [], leftoverNetns: [], bridgeLeft: false },
  };
  const crictl = join(findCriTools(), 'crictl');

  try {
    const binDirs = await cniBinDirs();
    const { network, cniConfDir, conflist, config } = await setUpBenchNetwork(state.dir, {
      networkName: `vmlet-peer-${tag}`,
      bridge: `vbpeer${tag}`,
      fileName: '10-vmlet-peer.conflist',
      ...(opts.subnetPrefix !== undefined ? { subnetPrefix: opts.subnetPrefix } : {}),
      ...(opts.subnet !== undefined ? { subnet: opts.subnet } : {}),
    });
    state.network = network;
    result.network.conflist = conflist;
    state.floor = new CniFloor(config, new ExecPluginRunner({ binDirs, timeoutMs: 60_000 }));

    const { entry } = await buildDaemon(opts.runtime, join(state.dir, 'build'), step);
    checkAbort();
    step(`starting vmlet serve (--vm-warm-pool ${opts.vmWarmPool})`);
    const dirs = daemonDirs(join(state.dir, 'vmlet'), cniConfDir, binDirs);
    // Log level info, as containerd's: a debug line per call would cost vmlet alone.
    state.daemon = await BenchDaemon.start(entry, dirs, 'info', ['--vm-warm-pool', String(opts.vmWarmPool)]);

    step('starting containerd on the same CNI conf dir; importing a locally built pause image with ctr');
    result.versions.containerd = execFileSync('containerd', ['--version'], { encoding: 'utf8' }).trim().split(' ').slice(2).join(' ');
    result.versions.crictl = execFileSync(crictl, ['--version'], { encoding: 'utf8' }).trim().replace(/^crictl version /, '');
    state.containerd = await startContainerd({ dir: join(state.dir, 'containerd'), cniConfDir, cniBinDir: binDirs[0]! });
    const archive = join(state.dir, 'pause.tar');
    buildOciArchive(CRITEST_IMAGES.filter((i) => i.name === PAUSE_IMAGE), archive);
    state.containerd.ctr(['images', 'import', archive]);
    state.containerdClient = new CriRuntimeClient(state.containerd.socket);

    const sides: Side[] = [
      { name: 'vmlet', client: state.daemon.client, socket: dirs.socket, samples: result.vmlet },
      { name: 'containerd', client: state.containerdClient, socket: state.containerd.socket, samples: result.containerd },
    ];
    const floor = state.floor;
    const floorRound = async (label: string, i: number): Promise<FloorAttachment> => {
      const netnsName = `vbfloor-${tag}-${label}${i}`;
      state.floorNetns.add(netnsName);
      const pod = { namespace: 'vmlet-bench', name: `floor-${tag}-${label}-${i}`, uid: randomUUID(), infraContainerId: `vbfloor${tag}${label}${i}` };
      const { attachment, timing } = await floor.setup(pod.infraContainerId, netnsName, pod);
      if (label === 'p') result.floor.setup.push(timing.totalMs);
      return attachment;
    };

    step('warm-up: one floor round and one Run/Stop/Remove on each runtime (not counted)');
    await floor.teardown(await floorRound('w', 0));
    for (const side of sides) {
      const { pod_sandbox_id: id } = await side.client.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config: podConfig(tag, 'w', 0) });
      await side.client.call('StopPodSandbox', { pod_sandbox_id: id });
      await side.client.call('RemovePodSandbox', { pod_sandbox_id: id });
    }

    step(`${opts.n} × (floor ADD, vmlet Run, containerd Run), then the same for Stop, then Remove; one call at a time`);
    const ids: Record<Side['name'], string[]> = { vmlet: [], containerd: [] };
    const attachments: FloorAttachment[] = [];
    for (let i = 0; i < opts.n; i++) {
      checkAbort();
      attachments.push(await floorRound('p', i));
      for (const side of sides) {
        const [res, ms] = await timed(() => side.client.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config: podConfig(tag, 'p', i) }));
        ids[side.name].push(res.pod_sandbox_id);
        side.samples.run.push(ms);
      }
    }
    // As a pod's CreateContainer would have it: vmlet's VM side of every sandbox wired first.
    await waitForVmSides(state.daemon, ids.vmlet, signal);
    for (let i = 0; i < opts.n; i++) {
      checkAbort();
      result.floor.teardown.push((await floor.teardown(attachments[i]!)).totalMs);
      for (const side of sides) side.samples.stop.push((await timed(() => side.client.call('StopPodSandbox', { pod_sandbox_id: ids[side.name][i] })))[1]);
    }
    for (let i = 0; i < opts.n; i++) {
      for (const side of sides) side.samples.remove.push((await timed(() => side.client.call('RemovePodSandbox', { pod_sandbox_id: ids[side.name][i] })))[1]);
    }

    const daemon = state.daemon;
    const containerdPid = state.containerd.child.pid!;
    const quiet = async (phase: string) => {
      const waits = await waitQuiet(
        {
          vmlet: async () => {
            const netd = await daemon.netdPid();
            return netd === undefined ? [daemon.pid] : [daemon.pid, netd];
          },
          containerd: async () => [containerdPid],
        },
        signal,
      );
      result.quietWaits[phase] = waits;
      step(`quiet before ${phase}: vmlet after ${waits.vmlet} ms, containerd after ${waits.containerd} ms`);
    };
    await quiet('unary');
    step(`Version × ${opts.versionCalls} on each, alternating; crictl --version, crictl version × ${opts.crictlCalls}`);
    for (let i = 0; i < opts.versionCalls; i++) {
      for (const side of sides) side.samples.version.push((await timed(() => side.client.call('Version', {})))[1]);
    }
    // An empty config of its own: crictl would otherwise read one next to its binary or in /etc.
    const crictlConfig = join(state.dir, 'crictl.yaml');
    await writeFile(crictlConfig, '');
    const crictlOf = (side: Side, args: string[]) => () =>
      execFileP(crictl, ['--config', crictlConfig, '--runtime-endpoint', `unix://${side.socket}`, '--image-endpoint', `unix://${side.socket}`, '--timeout', '60s', ...args], {
        maxBuffer: 16 << 20,
      });
    for (let i = 0; i < opts.crictlCalls; i++) {
      checkAbort();
      result.crictlStart.push((await timed(() => execFileP(crictl, ['--version'])))[1]);
      for (const side of sides) side.samples.crictlVersion.push((await timed(crictlOf(side, ['version'])))[1]);
    }

    step(`${opts.listPods} pods on each runtime (10 at a time), then ListPodSandbox, ListContainers, Status, PodSandboxStatus and their crictl commands`);
    const listIds: Record<Side['name'], string[]> = { vmlet: [], containerd: [] };
    for (const side of sides) {
      const t0 = now();
      listIds[side.name] = await pool(opts.listPods, 10, signal, async (i) => {
        const id = (await side.client.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config: podConfig(tag, 'l', i) })).pod_sandbox_id;
        if (i >= MAX_READY_LIST_PODS) await side.client.call('StopPodSandbox', { pod_sandbox_id: id });
        return id;
      });
      side.samples.listSetup.push(now() - t0);
      step(`${side.name}: ${opts.listPods} pods up in ${((now() - t0) / 1000).toFixed(1)} s`);
    }
    await quiet('list');
    for (const side of sides) {
      const { items } = await side.client.call<{ items: unknown[] }>('ListPodSandbox', {});
      if (items.length < opts.listPods) throw new Error(`${side.name} lists ${items.length} pods, expected at least ${opts.listPods}`);
    }
    for (let i = 0; i < 50; i++) {
      for (const side of sides) side.samples.list.push((await timed(() => side.client.call('ListPodSandbox', {})))[1]);
      for (const side of sides) side.samples.listContainers.push((await timed(() => side.client.call('ListContainers', {})))[1]);
    }
    // One ready pod in the middle of the list is the PodSandboxStatus subject on each side.
    const probe = (side: Side) => listIds[side.name][Math.min(opts.listPods, MAX_READY_LIST_PODS) >> 1]!;
    for (let i = 0; i < opts.versionCalls; i++) {
      for (const side of sides) side.samples.status.push((await timed(() => side.client.call('Status', {})))[1]);
      for (const side of sides) side.samples.podStatus.push((await timed(() => side.client.call('PodSandboxStatus', { pod_sandbox_id: probe(side) })))[1]);
    }
    for (let i = 0; i < opts.crictlCalls; i++) {
      checkAbort();
      for (const side of sides) side.samples.crictlPods.push((await timed(crictlOf(side, ['pods'])))[1]);
      for (const side of sides) side.samples.crictlPs.push((await timed(crictlOf(side, ['ps', '-a'])))[1]);
      for (const side of sides) side.samples.crictlInfo.push((await timed(crictlOf(side, ['info'])))[1]);
      for (const side of sides) side.samples.crictlInspectp.push((await timed(crictlOf(side, ['inspectp', probe(side)])))[1]);
    }
    step('removing the list pods');
    for (const side of sides) {
      await pool(opts.listPods, 10, signal, async (i) => {
        await side.client.call('StopPodSandbox', { pod_sandbox_id: listIds[side.name][i] });
        await side.client.call('RemovePodSandbox', { pod_sandbox_id: listIds[side.name][i] });
      });
    }

    if (opts.containerRows && !existsSync(LIBVIRT_SOCKET)) result.containerRowsSkipped = `no libvirtd socket at ${LIBVIRT_SOCKET}`;
    else if (opts.containerRows) {
      checkAbort();
      await containerStatusRows({
        sides,
        containerdImage: PAUSE_IMAGE,
        podConfig: () => podConfig(tag, 'c', 0),
        calls: opts.versionCalls,
        crictlCalls: opts.crictlCalls,
        crictl: (side, args) => crictlOf(side, args)(),
        quiet,
        step,
        checkAbort,
      });
    }

    if (opts.warmStop > 0 && !existsSync(LIBVIRT_SOCKET)) result.warmStopSkipped = `no libvirtd socket at ${LIBVIRT_SOCKET}`;
    else if (opts.warmStop > 0) {
      checkAbort();
      step(`warm-stop: a second vmlet with --vm-warm-pool 1; ${opts.warmStop} × (Run adopting the warm VM, containerd Run, floor round, vmlet Stop, containerd Stop)`);
      // debug: the pool's lines say when a warm VM is idle (they cost vmlet, not containerd).
      state.warmDaemon = await BenchDaemon.start(entry, daemonDirs(join(state.dir, 'warm'), cniConfDir, binDirs), 'debug', ['--vm-warm-pool', '1']);
      await warmStopRounds(state.warmDaemon, sides[1]!, opts.warmStop, tag, floor, (i) => floorRound('ws', i), result, signal);
      await state.warmDaemon.stop();
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
  for (const side of [result.vmlet, result.containerd]) for (const k of Object.keys(side) as (keyof RuntimeSamples)[]) side[k] = roundSamples(side[k]);
  result.floor = { setup: roundSamples(result.floor.setup), teardown: roundSamples(result.floor.teardown), teardownWarm: roundSamples(result.floor.teardownWarm) };
  result.crictlStart = roundSamples(result.crictlStart);
  const c = result.cleanup;
  return run.finish(jsonPath, result, formatPeerReport(result), c.errors.length > 0 || c.leftoverNetns.length > 0 || c.bridgeLeft);
}

async function cleanup(state: PeerState): Promise<PeerResult['cleanup']> {
  const errors: string[] = [];
  const note = (what: string, err: unknown) => errors.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
  if (state.daemon) await removeThroughDaemons([state.daemon, ...(state.warmDaemon ? [state.warmDaemon] : [])], state.tag, { containers: false }, errors, note);
  if (state.containerdClient) {
    const client = state.containerdClient;
    try {
      const { items } = await client.call<{ items: { id: string }[] }>('ListPodSandbox', { filter: { label_selector: { [RUN_LABEL]: state.tag } } }, 30_000);
      for (const item of items) {
        await client.call('StopPodSandbox', { pod_sandbox_id: item.id }, 60_000).catch((err: unknown) => note(`containerd stop ${item.id}`, err));
        await client.call('RemovePodSandbox', { pod_sandbox_id: item.id }, 60_000).catch((err: unknown) => note(`containerd remove ${item.id}`, err));
      }
    } catch (err) {
      note('list containerd pods for cleanup', err);
    }
    client.close();
  }
  if (state.containerd) await state.containerd.stop().catch((err: unknown) => note('stop containerd', err));
  for (const name of await listNetns()) {
    if (state.floorNetns.has(name)) await deleteNetns(name).catch((err: unknown) => note(`delete netns ${name}`, err));
  }
  if (state.network) await deleteLink(state.network.bridge).catch((err: unknown) => note(`delete bridge ${state.network!.bridge}`, err));
  const leftoverNetns = (await listNetns()).filter((n) => state.floorNetns.has(n));
  const bridgeLeft = state.network ? await linkExists(state.network.bridge) : false;
  await rm(state.dir, { recursive: true, force: true }).catch((err: unknown) => note(`remove ${state.dir}`, err));
  return { errors, leftoverNetns, bridgeLeft };
}
