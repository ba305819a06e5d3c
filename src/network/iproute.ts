/**
 * The narrow seam between network wiring and iproute2. netd stays in the host namespace: every call
 * names the pod netns and `ip -n NAME` switches only the child process. Reads go through
 * `ip -j -d -batch -` (one JSON document per show command, one process for all of them); changes go
 * through one `ip -batch -` per step sequence, so wiring an interface costs one spawn, not ten.
 * `IpRunner` is what the bindings talk to (unit tests fake it); `ExecIpRunner` is the real one.
 */
import { spawn } from 'node:child_process';
import {
  DeadlineExceededError,
  InternalError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
} from '../errors.js';
import { assertNetnsName } from './names.js';

/**
 * The netns argument that means the host's own namespace (no `-n`): for what lives there, such as
 * an SR-IOV PF and a VF's netdev before it goes back to its pod.
 */
export const HOST_NETNS = '(host)';

/** One iproute2 command without the leading `ip`, as an argument array: ['link', 'set', …]. */
export type IpCommand = readonly string[];

export interface IpRunner {
  /**
   * Runs show commands in `netns` in one process and returns one parsed JSON document per command,
   * in order. Fails (NotFoundError) when a named device or the netns does not exist.
   */
  show(netns: string, commands: readonly IpCommand[]): Promise<unknown[]>;
  /** Runs change commands in `netns` in one process; stops at the first command that fails. */
  apply(netns: string, commands: readonly IpCommand[]): Promise<void>;
}

/**
 * Arguments must survive iproute2's batch line splitting unchanged: it splits on blanks, cuts at
 * '#', joins lines ending in '\' and treats leading quotes specially. Anything else is refused, so
 * a hostile value can never become a second argument or a second command.
 */
const BATCH_ARG = /^[^\s#\\'"]+$/;

/** The stdin of `ip -batch -` for `commands`: one command per line. Pure. */
export function formatBatch(commands: readonly IpCommand[]): string {
  return commands
    .map((command, index) => {
      if (command.length === 0) throw new InvalidArgumentError(`ip batch command ${index} is empty`);
      for (const arg of command) {
        if (typeof arg !== 'string' || !BATCH_ARG.test(arg)) {
          throw new InvalidArgumentError(`ip batch command ${index} has an unsafe argument ${JSON.stringify(arg)}`);
        }
      }
      return `${command.join(' ')}\n`;
    })
    .join('');
}

/**
 * Splits `ip -j -batch` output into its documents. iproute2 prints each command's JSON on one line
 * (escaping newlines inside strings), so lines are documents; blank lines are skipped.
 */
export function parseJsonDocuments(stdout: string, expected: number): unknown[] {
  const docs: unknown[] = [];
  for (const line of stdout.split('\n')) {
    if (line.trim() === '') continue;
    try {
      docs.push(JSON.parse(line));
    } catch (err) {
      throw new InternalError(`ip printed a line that is not JSON: ${line.slice(0, 200)}`, { cause: err });
    }
  }
  if (docs.length !== expected) {
    throw new InternalError(`ip printed ${docs.length} JSON documents for ${expected} show commands`);
  }
  return docs;
}

/** A tool exited non-zero; its stderr is kept for the message and for callers that match on it. */
export class ToolFailedError extends InternalError {
  constructor(
    readonly tool: string,
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${tool} ${args.join(' ')} failed (exit ${exitCode ?? 'signal'}): ${stderr.trim() || 'no stderr'}`);
  }
}

export interface ToolRunOptions {
  stdin?: string;
  timeoutMs: number;
}

export interface ToolOutput {
  stdout: string;
  stderr: string;
}

/** Outputs of iproute2 and nft for one pod netns are a few KiB; more is a runaway process. */
const MAX_OUTPUT_BYTES = 8 * 1024 * 1024;

/**
 * Runs `file args` (no shell) with optional stdin and a hard timeout. Shared by the iproute2 and
 * nft runners. Rejects with ToolFailedError on a non-zero exit, DeadlineExceededError on timeout
 * (the child is killed), UnavailableError when the executable is missing.
 */
export function runTool(file: string, args: readonly string[], options: ToolRunOptions): Promise<ToolOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let outBytes = 0;
    let settled = false;
    const finish = (err: Error | undefined, out?: ToolOutput): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(out!);
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(new DeadlineExceededError(`${file} ${args.join(' ')} did not finish within ${options.timeoutMs} ms`));
    }, options.timeoutMs);
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes > MAX_OUTPUT_BYTES) {
        child.kill('SIGKILL');
        finish(new InternalError(`${file} printed more than ${MAX_OUTPUT_BYTES} bytes`));
        return;
      }
      into.push(chunk);
    };
    child.stdout.on('data', collect(stdout));
    child.stderr.on('data', collect(stderr));
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') finish(new UnavailableError(`${file} is not installed`, { cause: err }));
      else finish(new InternalError(`cannot run ${file}: ${err.message}`, { cause: err }));
    });
    child.on('close', (code) => {
      const out = { stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8') };
      if (code === 0) finish(undefined, out);
      else finish(new ToolFailedError(file, args, code, out.stderr));
    });
    // A child that exits before reading stdin makes the write fail with EPIPE; its exit code tells.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.stdin ?? '');
  });
}

/** iproute2's wording for "the device / namespace you named is not there". */
const NOT_FOUND_STDERR = /does not exist|Cannot find device|Cannot open network namespace|No such device/;

export interface ExecIpRunnerOptions {
  /** The `ip` executable; resolved through PATH by default. */
  ipPath?: string;
  timeoutMs?: number;
}

export const DEFAULT_IP_TIMEOUT_MS = 10_000;

/** The real IpRunner: `ip -n NETNS [-j -d] -batch -` with the commands on stdin. */
export class ExecIpRunner implements IpRunner {
  private readonly ipPath: string;
  private readonly timeoutMs: number;

  constructor(options: ExecIpRunnerOptions = {}) {
    this.ipPath = options.ipPath ?? 'ip';
    this.timeoutMs = options.timeoutMs ?? DEFAULT_IP_TIMEOUT_MS;
  }

  async show(netns: string, commands: readonly IpCommand[]): Promise<unknown[]> {
    if (commands.length === 0) return [];
    const { stdout } = await this.run(netns, ['-j', '-d'], commands);
    return parseJsonDocuments(stdout, commands.length);
  }

  async apply(netns: string, commands: readonly IpCommand[]): Promise<void> {
    if (commands.length === 0) return;
    await this.run(netns, [], commands);
  }

  private async run(netns: string, flags: string[], commands: readonly IpCommand[]): Promise<ToolOutput> {
    if (netns !== HOST_NETNS) assertNetnsName(netns);
    const stdin = formatBatch(commands);
    const where = netns === HOST_NETNS ? [] : ['-n', netns];
    try {
      return await runTool(this.ipPath, [...where, ...flags, '-batch', '-'], { stdin, timeoutMs: this.timeoutMs });
    } catch (err) {
      if (err instanceof ToolFailedError && NOT_FOUND_STDERR.test(err.stderr)) {
        throw new NotFoundError(`in netns ${netns}: ${err.stderr.trim()}`, { cause: err });
      }
      throw err;
    }
  }
}
