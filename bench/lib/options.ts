/** Option parsing shared by the benchmarks: a usage error type, checked values, the run prologue. */
import { parseArgs } from 'node:util';
import { join } from 'node:path';

/** A bad command line: the runner prints it with the usage text and exits 2. */
export class UsageError extends Error {}

/**
 * Parses `argv` against `options` (every one a `--name value` string unless declared boolean;
 * `--help` is added). Returns a reader of the string values and the flags, or undefined for
 * --help; an unknown option or a stray argument is a UsageError.
 */
export function parseBenchArgs(
  argv: readonly string[],
  options: Record<string, 'string' | 'boolean'>,
): { str: (name: string) => string | undefined; flag: (name: string) => boolean } | undefined {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: { ...Object.fromEntries(Object.entries(options).map(([k, type]) => [k, { type }])), help: { type: 'boolean' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return undefined;
  return { str: (k) => values[k] as string | undefined, flag: (k) => values[k] === true };
}

/** The default results file: `bench/results/<bench>-<time>.json`. */
export function defaultJsonPath(repoRoot: string, bench: string, now: Date): string {
  return join(repoRoot, 'bench', 'results', `${bench}-${now.toISOString().replace(/[:.]/g, '-')}.json`);
}

export function intOption(value: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${name} must be a whole number, not ${JSON.stringify(value)}`);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}`);
  return n;
}

/** A /24 prefix of the test networks (198.18.0.0/15) such as `198.18.239`, for benches that make a pod network. */
export function subnetPrefixOption(value: string | undefined, fallback: string): string {
  const prefix = value ?? fallback;
  if (!/^198\.1[89]\.\d{1,3}$/.test(prefix)) throw new UsageError(`--subnet-prefix must be a /24 prefix of 198.18.0.0/15 like ${fallback}`);
  return prefix;
}

/**
 * A CIDR of the test networks (198.18.0.0/15) from /16 to /24, such as `198.19.80.0/21`, for a
 * bench whose pods need more than a /24's addresses. Must be the network's own address. Pure.
 */
export function subnetOption(value: string, name = 'subnet'): string {
  const m = /^198\.(1[89])\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(value);
  const len = m === null ? NaN : Number(m[4]);
  if (m === null || !(len >= 16 && len <= 24) || Number(m[2]) > 255 || Number(m[3]) > 255) {
    throw new UsageError(`--${name} must be a CIDR inside 198.18.0.0/15 from /16 to /24, like 198.19.80.0/21`);
  }
  const host = ((Number(m[2]) << 8) | Number(m[3])) >>> 0;
  if (host % 2 ** (24 - len + 8) !== 0) throw new UsageError(`--${name} ${value} is not the network's own address (its host bits must be 0)`);
  return value;
}

/** Addresses host-local can hand out in an IPv4 subnet of this prefix length (network, gateway, broadcast aside). Pure. */
export function assignableAddresses(cidr: string): number {
  return 2 ** (32 - Number(cidr.split('/')[1])) - 3;
}

export function oneOfOption<T extends string>(value: string | undefined, name: string, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}`);
  return value as T;
}

/**
 * Parses the options and checks for root. Returns the options, or the exit code to end with:
 * 0 after --help, 2 for a usage error or when not root (`rootReason` says what needs root).
 */
export function benchPrologue<O>(parse: () => O | undefined, usage: string, rootReason: string): O | number {
  let opts: O | undefined;
  try {
    opts = parse();
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n\n${usage}`);
      return 2;
    }
    throw err;
  }
  if (opts === undefined) {
    process.stdout.write(usage);
    return 0;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write(`${rootReason}: run it as root\n`);
    return 2;
  }
  return opts;
}
