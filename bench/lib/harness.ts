/**
 * The run loop every benchmark shares: Ctrl-C handling (calls in flight finish, then the cleanup
 * runs), progress lines on stderr, and the end of a run: the JSON with every sample, the printed
 * report and the exit code.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { benchPrologue } from './options.js';
import { InterruptedError } from './pool.js';

export const now = () => performance.now();

/** Waits `ms`; rejects with InterruptedError as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new InterruptedError());
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new InterruptedError());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A run's failure as the result records it. */
export function errorText(err: unknown): string {
  if (err instanceof InterruptedError) return 'interrupted (Ctrl-C)';
  // A gRPC error's message already says code and details; its stack is grpc-js internals.
  if (err instanceof Error && 'details' in err) return err.message;
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

export interface InterruptMessages {
  /** Printed on the first SIGINT/SIGTERM. */
  first: string;
  /** Printed on every later one, while the cleanup runs. */
  again: string;
}

/**
 * One benchmark run: SIGINT/SIGTERM abort `signal` (the bench lets calls in flight finish and
 * cleans up) instead of ending the process; `step` prints a progress line with the bench's prefix.
 */
export class BenchRun {
  private readonly aborter = new AbortController();
  private interrupts = 0;
  private readonly onSignal = (name: string) => {
    this.interrupts++;
    process.stderr.write(this.interrupts === 1 ? `\n${name}: ${this.messages.first}\n` : `${name}: ${this.messages.again}\n`);
    this.aborter.abort();
  };

  constructor(
    private readonly prefix: string,
    private readonly messages: InterruptMessages,
  ) {
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
  }

  get signal(): AbortSignal {
    return this.aborter.signal;
  }

  readonly step = (text: string): void => {
    process.stderr.write(`${this.prefix} ${text}\n`);
  };

  readonly checkAbort = (): void => {
    if (this.signal.aborted) throw new InterruptedError();
  };

  /** After the cleanup: Ctrl-C ends the process again. */
  close(): void {
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }

  /**
   * Writes the JSON, prints the report, and gives the exit code: 130 after Ctrl-C, 1 for a failed
   * run or anything left behind (`failed`), else 0 (a missed target is a result, not a failure).
   */
  async finish(jsonPath: string, result: { error?: string }, report: string, failed: boolean): Promise<number> {
    await mkdir(dirname(jsonPath), { recursive: true });
    await writeFile(jsonPath, `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(`\n${report}\n\nresults: ${jsonPath}\n`);
    if (result.error) return this.signal.aborted ? 130 : 1;
    return failed ? 1 : 0;
  }
}

/**
 * The start of every benchmark: parses the options (exit code 0 after --help, 2 for a usage error
 * or without root, returned as a number), then opens the run.
 */
export function openBenchRun<O extends { json: string }>(spec: {
  argv: readonly string[];
  parse: (argv: readonly string[], startedAt: Date) => O | undefined;
  usage: string;
  /** What needs root, for the refusal. */
  rootReason: string;
  /** Before each progress line. */
  prefix: string;
  interrupt: InterruptMessages;
}): { run: BenchRun; opts: O; startedAt: Date; jsonPath: string } | number {
  const startedAt = new Date();
  const opts = benchPrologue(() => spec.parse(spec.argv, startedAt), spec.usage, spec.rootReason);
  if (typeof opts === 'number') return opts;
  return { run: new BenchRun(spec.prefix, spec.interrupt), opts, startedAt, jsonPath: resolve(opts.json) };
}
