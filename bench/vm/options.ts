/** Command-line options of `npm run bench -- vm`. Pure. */
import { UsageError, defaultJsonPath, intOption, oneOfOption, parseBenchArgs, subnetPrefixOption } from '../lib/options.js';

export { UsageError };

export interface VmBenchOptions {
  /** Measured pods (the warm-up pod comes on top). */
  pods: number;
  /** Pods brought up at a time; 1 (default) runs them one after the other. */
  concurrency: number;
  json: string;
  /** A pod that fails is recorded and the others still run (default: the first failure ends the run). */
  keepGoing: boolean;
  runtime: 'dist' | 'tsx';
  /** Guest memory (the container's memory limit). */
  vmMemoryMiB: number;
  /** The daemon's --vm-warm-pool. */
  warmPool: number;
  /** How long a guest may take from StartContainer's return to its DHCP ACK and "ready" line. */
  bootTimeoutS: number;
  /** Span profile of serve's Run/Create/Start: when vmlet's share misses its target, always, or never. */
  profile: 'auto' | 'always' | 'never';
  profilePods: number;
  /**
   * How the measured pods are taken down: `kubelet` (StopContainer timeout 0, RemoveContainer,
   * then the sandbox) or `sandbox` (StopPodSandbox with the VM running, then RemovePodSandbox).
   */
  teardown: 'kubelet' | 'sandbox';
  /** Each pod gets one 64 MiB block volume (a loop device) in CreateContainer's devices. */
  blockVolume: boolean;
  /**
   * Rounds of the mounts phase (mounts.ts): per round a warm and a cold pod with kubelet's two
   * usual mounts and one of each without; 0 skips it.
   */
  mountRounds: number;
  /** Pods per burst in the bursts phase (bursts.ts); 0 skips it. */
  bursts: number;
  /**
   * Which phases run: `pods` (warm-up + measured pods, memory, profile), `mounts`, `bursts`
   * (each also skipped by its count being 0) and `scale` (not in the default set: it loads the
   * machine with many guests).
   */
  phases: VmPhase[];
  /** Scale phase (scale.ts): running VM pods at the top, brought up `scaleBatch` at a time. */
  scalePods: number;
  scaleBatch: number;
  /** Idle window per level (s) and list/status calls per method per level. */
  scaleIdleS: number;
  scaleCalls: number;
  /** Guest memory in the scale phase (its daemon's --vm-memory). */
  scaleMemoryMiB: number;
  /** The bench network's /24 (a prefix of 198.18.0.0/15); unset: a free 198.19.x. */
  subnetPrefix?: string;
}

export const VM_PHASES = ['pods', 'mounts', 'bursts', 'scale'] as const;
export type VmPhase = (typeof VM_PHASES)[number];
export const DEFAULT_PHASES: readonly VmPhase[] = ['pods', 'mounts', 'bursts'];

/** A comma-separated subset of VM_PHASES, in the order given, without repeats. Pure. */
export function phasesOption(value: string | undefined): VmPhase[] {
  if (value === undefined) return [...DEFAULT_PHASES];
  const names = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const bad = names.filter((n) => !(VM_PHASES as readonly string[]).includes(n));
  if (names.length === 0 || bad.length > 0) throw new UsageError(`--phases must be a comma-separated list of ${VM_PHASES.join(', ')}${bad.length > 0 ? ` (not ${bad.join(', ')})` : ''}`);
  return [...new Set(names as VmPhase[])];
}

export const VM_USAGE = `usage: npm run bench -- vm [options]   (as root; needs libvirtd, virtlogd, QEMU)

  --pods <count>            measured pods (default 4), after one warm-up pod that is reported apart
  --concurrency <count>     pods brought up at a time (default 1: one after the other; guests run
                            under TCG on a small machine, so overlapping boots slow each other)
  --json <file>             where to write the results (default bench/results/vm-<time>.json)
  --keep-going              record a failed pod and go on with the others (default: stop at the first)
  --runtime dist|tsx        daemon from a tsc build run by plain node (default, as in production)
                            or from the .ts sources under tsx (as the integration tests run it)
  --vm-memory <MiB>         guest memory (default 256; also the daemon's --vm-memory, so warm VMs fit)
  --warm-pool <count>       the daemon's --vm-warm-pool (default 1; 0 measures cold starts only).
                            Before each pod the bench waits (untimed) until a warm VM is idle, as
                            it would be for pods that do not arrive within a second of each other
  --boot-timeout <seconds>  limit from StartContainer's return to the guest's "ready" (default 240)
  --profile auto|always|never
                            after the measured pods, a second daemon with timing spans around
                            serve's steps runs a few more pods (Run/Create/Start only, no boot):
                            when vmlet's share misses its target (auto, default), always, or never
  --profile-pods <count>    pods for the span profile, after one warm-up (default 5)
  --teardown kubelet|sandbox
                            take the measured pods down as kubelet does (StopContainer timeout 0,
                            RemoveContainer, StopPodSandbox, RemovePodSandbox; default), or with
                            StopPodSandbox while the VM runs, then RemovePodSandbox
  --block-volume            each pod gets one 64 MiB raw block volume (a loop device made by the
                            bench, in CreateContainer's devices), as a PVC with volumeMode Block
  --mount-rounds <count>    rounds of the mounts phase (default 3; 0 skips it): per round four pods,
                            Run + Create + Start then removed (no boot): a warm VM and a cold VM
                            (a second daemon with --vm-warm-pool 0), each with kubelet's two usual
                            mounts (/etc/hosts, the service-account token volume, read-only) and
                            without mounts; also the RSS of each VM's virtiofsd processes
  --bursts <count>          pods per burst in the bursts phase (default 10; 0 skips it): per warm-pool
                            setting (--vm-warm-pool 1, then --vm-warm-pool 1 --vm-warm-pool-max 4
                            --vm-warm-fill-parallel 2, each a daemon of its own) that many pods
                            back-to-back, then that many at once, Run + Create + Start (the guests
                            boot meanwhile), then all removed; also the cost of one idle warm VM
  --phases <list>           phases to run, comma-separated (default pods,mounts,bursts): pods (the
                            warm-up and measured pods, memory, profile), mounts, bursts, scale
  --scale-pods <count>      scale phase (only with --phases ...scale): running VM pods at the top
                            (default 50; small guests, a daemon of its own at log level info).
                            At 1 pod and at N: vmlet's idle CPU (serve, netd and their own
                            children, not QEMU/virtiofsd), serve's and netd's RSS, and list and
                            status latencies against Version's (the floor) in the same run
  --scale-batch <count>     pods brought up at a time in the scale phase (default 4; each batch's
                            guests reach "ready" before the next batch starts)
  --scale-idle <seconds>    idle window per level, nothing calling the daemon (default 60)
  --scale-calls <count>     calls per method per level for the latencies (default 200)
  --scale-memory <MiB>      guest memory in the scale phase (default 96: the busybox test guest
                            reboots in a loop with 64)
  --subnet-prefix <a.b.c>   the bench network's /24 (a prefix of 198.18.0.0/15; default: a free 198.19.x)
  --help
`;

/** Undefined for --help. `now` names the default results file. */
export function parseVmOptions(argv: readonly string[], repoRoot: string, now: Date): VmBenchOptions | undefined {
  const args = parseBenchArgs(argv, {
    pods: 'string',
    concurrency: 'string',
    json: 'string',
    'keep-going': 'boolean',
    runtime: 'string',
    'vm-memory': 'string',
    'warm-pool': 'string',
    'boot-timeout': 'string',
    profile: 'string',
    'profile-pods': 'string',
    teardown: 'string',
    'block-volume': 'boolean',
    'mount-rounds': 'string',
    bursts: 'string',
    'subnet-prefix': 'string',
    phases: 'string',
    'scale-pods': 'string',
    'scale-batch': 'string',
    'scale-idle': 'string',
    'scale-calls': 'string',
    'scale-memory': 'string',
  });
  if (args === undefined) return undefined;
  const { str, flag } = args;
  const pods = intOption(str('pods'), 'pods', 4, 1, 64);
  return {
    pods,
    concurrency: Math.min(intOption(str('concurrency'), 'concurrency', 1, 1, 64), pods),
    json: str('json') ?? defaultJsonPath(repoRoot, 'vm', now),
    keepGoing: flag('keep-going'),
    runtime: oneOfOption(str('runtime'), 'runtime', ['dist', 'tsx'] as const, 'dist'),
    vmMemoryMiB: intOption(str('vm-memory'), 'vm-memory', 256, 64, 4096),
    warmPool: intOption(str('warm-pool'), 'warm-pool', 1, 0, 16),
    bootTimeoutS: intOption(str('boot-timeout'), 'boot-timeout', 240, 5, 3600),
    profile: oneOfOption(str('profile'), 'profile', ['auto', 'always', 'never'] as const, 'auto'),
    profilePods: intOption(str('profile-pods'), 'profile-pods', 5, 1, 100),
    teardown: oneOfOption(str('teardown'), 'teardown', ['kubelet', 'sandbox'] as const, 'kubelet'),
    blockVolume: flag('block-volume'),
    mountRounds: intOption(str('mount-rounds'), 'mount-rounds', 3, 0, 50),
    bursts: intOption(str('bursts'), 'bursts', 10, 0, 32),
    phases: phasesOption(str('phases')),
    scalePods: intOption(str('scale-pods'), 'scale-pods', 50, 2, 100),
    scaleBatch: intOption(str('scale-batch'), 'scale-batch', 4, 1, 16),
    scaleIdleS: intOption(str('scale-idle'), 'scale-idle', 60, 5, 600),
    scaleCalls: intOption(str('scale-calls'), 'scale-calls', 200, 10, 5000),
    scaleMemoryMiB: intOption(str('scale-memory'), 'scale-memory', 96, 64, 4096),
    ...(str('subnet-prefix') !== undefined ? { subnetPrefix: subnetPrefixOption(str('subnet-prefix'), '198.19.64') } : {}),
  };
}
