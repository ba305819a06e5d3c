/** Command-line options of `npm run bench -- sandbox`. Pure. */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { UsageError, intOption, oneOfOption } from '../lib/options.js';
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
  --help
`;

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
    n: intOption(str('n'), 'n', 20, 1, 1000),
    concurrency: intOption(str('concurrency'), 'concurrency', 10, 1, 1000),
    json: str('json') ?? join(repoRoot, 'bench', 'results', `sandbox-${stamp}.json`),
    runtime: oneOfOption(str('runtime'), 'runtime', ['dist', 'tsx'] as const, 'dist'),
    listRecords: intOption(str('list-records'), 'list-records', 500, 1, 100_000),
    listCalls: intOption(str('list-calls'), 'list-calls', 200, 1, 100_000),
    profile: oneOfOption(str('profile'), 'profile', ['auto', 'always', 'never'] as const, 'auto'),
    profileIterations: intOption(str('profile-iterations'), 'profile-iterations', 10, 1, 1000),
    logLevel: oneOfOption(str('log-level'), 'log-level', ['trace', 'debug', 'info', 'warn', 'error'] as const, 'debug'),
  };
}
