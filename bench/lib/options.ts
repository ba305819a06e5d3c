/** Option parsing shared by the benchmarks: a usage error type, checked values, the run prologue. */

/** A bad command line: the runner prints it with the usage text and exits 2. */
export class UsageError extends Error {}

export function intOption(value: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${name} must be a whole number, not ${JSON.stringify(value)}`);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}`);
  return n;
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
