/** Command-line options of `npm run bench -- sandbox`. Pure. */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import type { SandboxBenchOptions } from './result.js';

export class UsageError extends Error {}

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
  --help
`;

function int(value: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${name} must be a whole number, not ${JSON.stringify(value)}`);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}`);
  return n;
}

function oneOf<T extends string>(value: string | undefined, name: string, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}`);
  return value as T;
}

/** Undefined for --help. `now` names the default results file. */
export function parseSandboxOptions(argv: readonly string[], repoRoot: string, now: Date): SandboxBenchOptions | undefined {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        n: { type: 'string' },
        concurrency: { type: 'string' },
        json: { type: 'string' },
        runtime: { type: 'string' },
        'list-records': { type: 'string' },
        'list-calls': { type: 'string' },
        profile: { type: 'string' },
        'profile-iterations': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return undefined;
  const str = (k: string) => values[k] as string | undefined;
  const stamp = now.toISOString().replace(/[:.]/g, '-');
  return {
    n: int(str('n'), 'n', 20, 1, 1000),
    concurrency: int(str('concurrency'), 'concurrency', 10, 1, 1000),
    json: str('json') ?? join(repoRoot, 'bench', 'results', `sandbox-${stamp}.json`),
    runtime: oneOf(str('runtime'), 'runtime', ['dist', 'tsx'] as const, 'dist'),
    listRecords: int(str('list-records'), 'list-records', 500, 1, 100_000),
    listCalls: int(str('list-calls'), 'list-calls', 200, 1, 100_000),
    profile: oneOf(str('profile'), 'profile', ['auto', 'always', 'never'] as const, 'auto'),
    profileIterations: int(str('profile-iterations'), 'profile-iterations', 10, 1, 1000),
    logLevel: oneOf(str('log-level'), 'log-level', ['trace', 'debug', 'info', 'warn', 'error'] as const, 'debug'),
  };
}
