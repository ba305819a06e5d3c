/** Command-line options of `npm run bench -- sandbox`. Pure. */
import { UsageError, defaultJsonPath, intOption, oneOfOption, parseBenchArgs, subnetPrefixOption } from '../lib/options.js';
import type { SandboxBenchOptions } from './result.js';

export { UsageError };

export const SANDBOX_USAGE = `usage: npm run bench -- sandbox [options]   (as root)

  --n <count>               sandboxes per phase (default 20)
  --concurrency <count>     calls in flight in the concurrent phase (default 10)
  --json <file>             where to write the results (default bench/results/sandbox-<time>.json)
  --runtime dist|tsx        daemon from a tsc build run by plain node (default, as in production)
                            or from the .ts sources under tsx (as the integration tests run it)
  --list-records <count>    sandbox records in the store for ListPodSandbox (default 500)
  --list-calls <count>      timed ListPodSandbox calls per filter (default 200)
  --profile auto|always|never
                            drive netd's NetworkManager with timing spans: when RunPodSandbox
                            misses its target (auto, default), always, or never
  --profile-iterations <n>  sandboxes for the span profile (default 10)
  --log-level <level>       the daemon's log level (default debug: the breakdown reads its lines)
  --warm-stop <count>       sandboxes that claim a warm VM and stop without using it, on a daemon
                            with --vm-warm-pool 1 (needs libvirtd; default 5, 0 skips the phase)
  --vm-stop <count>         sandboxes per case whose VM runs (the busybox test guest booted) when
                            StopPodSandbox comes: a warm VM, then a cold one (needs libvirtd;
                            default 3; the phase runs only when --phases names vm-stop)
  --phases <list>           comma-separated, of sandbox, warm-stop, vm-stop, list
                            (default sandbox,warm-stop,list)
  --subnet-prefix <a.b.c>   the bench network's /24 (a prefix of 198.18.0.0/15; default: a free 198.19.x)
  --help
`;

/** Undefined for --help. `now` names the default results file. */
export function parseSandboxOptions(argv: readonly string[], repoRoot: string, now: Date): SandboxBenchOptions | undefined {
  const args = parseBenchArgs(argv, {
    n: 'string',
    concurrency: 'string',
    json: 'string',
    runtime: 'string',
    'list-records': 'string',
    'list-calls': 'string',
    profile: 'string',
    'profile-iterations': 'string',
    'log-level': 'string',
    'warm-stop': 'string',
    'vm-stop': 'string',
    phases: 'string',
    'subnet-prefix': 'string',
  });
  if (args === undefined) return undefined;
  const { str } = args;
  return {
    n: intOption(str('n'), 'n', 20, 1, 1000),
    concurrency: intOption(str('concurrency'), 'concurrency', 10, 1, 1000),
    json: str('json') ?? defaultJsonPath(repoRoot, 'sandbox', now),
    runtime: oneOfOption(str('runtime'), 'runtime', ['dist', 'tsx'] as const, 'dist'),
    listRecords: intOption(str('list-records'), 'list-records', 500, 1, 100_000),
    listCalls: intOption(str('list-calls'), 'list-calls', 200, 1, 100_000),
    profile: oneOfOption(str('profile'), 'profile', ['auto', 'always', 'never'] as const, 'auto'),
    profileIterations: intOption(str('profile-iterations'), 'profile-iterations', 10, 1, 1000),
    warmStop: intOption(str('warm-stop'), 'warm-stop', 5, 0, 1000),
    vmStop: intOption(str('vm-stop'), 'vm-stop', 3, 1, 100),
    phases: phasesOption(str('phases')),
    logLevel: oneOfOption(str('log-level'), 'log-level', ['trace', 'debug', 'info', 'warn', 'error'] as const, 'debug'),
    ...(str('subnet-prefix') !== undefined ? { subnetPrefix: subnetPrefixOption(str('subnet-prefix'), '198.19.60') } : {}),
  };
}

const PHASES = ['sandbox', 'warm-stop', 'vm-stop', 'list'] as const;
/** vm-stop boots guests (minutes under TCG): only when asked for. */
const DEFAULT_PHASES = ['sandbox', 'warm-stop', 'list'] as const;

function phasesOption(value: string | undefined): SandboxBenchOptions['phases'] {
  if (value === undefined) return [...DEFAULT_PHASES];
  const parts = value.split(',').map((p) => p.trim()).filter(Boolean);
  const bad = parts.filter((p) => !(PHASES as readonly string[]).includes(p));
  if (parts.length === 0 || bad.length > 0) throw new UsageError(`--phases: expected a comma-separated list of ${PHASES.join(', ')}, got ${JSON.stringify(value)}`);
  return PHASES.filter((p) => parts.includes(p));
}
