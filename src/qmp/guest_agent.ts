/**
 * QEMU guest agent client: qemu-guest-agent in the guest, reached through the domain's
 * `org.qemu.guest_agent.0` virtio-serial channel.
 *
 * libvirt owns that channel: QEMU's end is a socket chardev that serves one client, and libvirtd
 * connects to it itself as soon as the guest opens the port (it recognises the channel by that
 * name). A second client (vmlet connecting to the socket) only ever waits in the listen backlog,
 * which is why an exec through the socket never got an answer from the real Debian guest. So the
 * commands go through libvirt (virDomainQemuAgentCommand), which resynchronises with
 * guest-sync before each one; `AgentChannel` is that narrow interface (src/libvirt/agent_channel.ts
 * in the product, a fake in tests).
 *
 * Protocol (QEMU's qga/qapi-schema.json): `guest-exec` (path, arg, input-data base64,
 * capture-output) answers the guest pid; `guest-exec-status` answers exited, exitcode or signal,
 * and out-data/err-data (base64) once the process has exited. The agent has no pty and no
 * streaming of stdin or output.
 */
import { Code, DeadlineExceededError, FailedPreconditionError, VmletError } from '../errors.js';

export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;
/** waitReady: pauses between pings while no agent answers, doubling. */
const AGENT_RETRY_FIRST_MS = 200;
const AGENT_RETRY_MAX_MS = 1000;
const AGENT_PING_TIMEOUT_MS = 10_000;

/** One agent command and its reply's `return` value. */
export interface AgentChannel {
  /**
   * Runs `{execute, arguments}` in the guest agent. Rejects with GuestAgentError when the agent
   * answers an error, with AgentUnavailableError when no agent answers (none connected, or it did
   * not sync in libvirt's bounded wait), with another FAILED_PRECONDITION when the VM is not running.
   */
  command(execute: string, args: object | undefined, timeoutMs: number): Promise<unknown>;
}

/**
 * No agent answers: none is connected to the channel (the guest has not started it yet, or has
 * none), or a connected one did not answer libvirt's sync in time. Worth asking again while a
 * guest boots; `GuestAgent.waitReady` does, up to a bound.
 */
export class AgentUnavailableError extends FailedPreconditionError {}

export class GuestAgentError extends VmletError {
  constructor(
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(Code.FAILED_PRECONDITION, `guest agent: ${desc} (${errorClass})`);
  }
}

export interface GuestExecResult {
  /** The exit code, or 128 + signal when the process was killed by a signal. */
  exitCode: number;
  signal?: number;
  stdout: Buffer;
  stderr: Buffer;
  truncated: boolean;
}

export interface GuestExecOptions {
  /** Program and arguments; the agent looks the program up in the guest's PATH. */
  argv: string[];
  /** Fed to the process as stdin (then closed). */
  input?: Buffer;
  env?: string[];
  /** Overall time limit; on expiry the process is killed in the guest and DEADLINE_EXCEEDED thrown. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export class GuestAgent {
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(private readonly channel: AgentChannel) {}

  /** Runs one agent command; commands of one agent run one at a time. */
  execute<T = unknown>(command: string, args?: object, timeoutMs = DEFAULT_COMMAND_TIMEOUT_MS): Promise<T> {
    const run = this.chain.then(() => {
      if (this.closed) throw new FailedPreconditionError('guest agent connection closed');
      return this.channel.command(command, args, timeoutMs);
    });
    this.chain = run.catch(() => undefined);
    return run as Promise<T>;
  }

  /** Resolves once an agent answers; FAILED_PRECONDITION (bounded) when none does. */
  ready(): Promise<void> {
    return this.execute('guest-ping').then(() => undefined);
  }

  /**
   * Resolves once an agent answers `guest-ping`, asking again while none does (a guest that was
   * just started has not run its agent yet), for at most `boundMs`. Then FAILED_PRECONDITION,
   * saying how long it waited. Any other failure (the VM stopped) ends the wait at once.
   */
  async waitReady(boundMs: number, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + boundMs;
    let last: AgentUnavailableError | undefined;
    for (let delay = AGENT_RETRY_FIRST_MS; ; delay = Math.min(delay * 2, AGENT_RETRY_MAX_MS)) {
      if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('cancelled');
      const left = deadline - Date.now();
      if (left <= 0) break;
      try {
        // libvirt's own sync wait (5 s) bounds one ping of a connected but silent agent.
        await this.execute('guest-ping', undefined, Math.min(left, AGENT_PING_TIMEOUT_MS));
        return;
      } catch (err) {
        if (!(err instanceof AgentUnavailableError)) throw err;
        last = err;
      }
      const pause = Math.min(delay, deadline - Date.now());
      if (pause > 0) await sleep(pause, signal);
    }
    throw new AgentUnavailableError(`${last?.message ?? 'no guest agent answers'} (waited ${formatSeconds(boundMs)} for it)`);
  }

  close(): void {
    this.closed = true;
  }

  /** guest-exec + guest-exec-status polling; see GuestExecOptions. */
  async exec(opts: GuestExecOptions): Promise<GuestExecResult> {
    const [path, ...arg] = opts.argv;
    if (!path) throw new FailedPreconditionError('exec needs a command');
    const started = Date.now();
    const deadline = opts.timeoutMs && opts.timeoutMs > 0 ? started + opts.timeoutMs : undefined;
    const args: Record<string, unknown> = { path, arg, 'capture-output': true };
    if (opts.input !== undefined) args['input-data'] = opts.input.toString('base64');
    if (opts.env) args.env = opts.env;
    let pid: number;
    try {
      pid = (await this.execute<{ pid: number }>('guest-exec', args)).pid;
    } catch (err) {
      if (err instanceof GuestAgentError) {
        // The program could not be started (not found, not executable): the shell's convention.
        return { exitCode: 127, stdout: Buffer.alloc(0), stderr: Buffer.from(`vmlet: the guest agent could not run ${path}: ${err.desc}\n`), truncated: false };
      }
      throw err;
    }
    for (let delay = 20; ; delay = Math.min(delay * 2, 250)) {
      const status = await this.execute<ExecStatus>('guest-exec-status', { pid });
      if (status.exited) return execResult(status);
      if (opts.signal?.aborted) {
        await this.kill(pid);
        throw opts.signal.reason instanceof Error ? opts.signal.reason : new Error('exec cancelled');
      }
      if (deadline !== undefined && Date.now() >= deadline) {
        await this.kill(pid);
        throw new DeadlineExceededError(`command ${JSON.stringify(opts.argv)} timed out after ${opts.timeoutMs} ms (killed in the guest)`);
      }
      await sleep(deadline !== undefined ? Math.max(1, Math.min(delay, deadline - Date.now())) : delay);
    }
  }

  /** SIGKILL for a guest process started by guest-exec, through the agent; best effort. */
  private async kill(pid: number): Promise<void> {
    try {
      const { pid: killer } = await this.execute<{ pid: number }>('guest-exec', { path: 'kill', arg: ['-KILL', String(pid)] });
      for (let i = 0; i < 20; i++) {
        if ((await this.execute<ExecStatus>('guest-exec-status', { pid: killer })).exited) break;
        await sleep(50);
      }
      // Reap the killed process so the agent forgets it.
      for (let i = 0; i < 20; i++) {
        if ((await this.execute<ExecStatus>('guest-exec-status', { pid })).exited) break;
        await sleep(50);
      }
    } catch {
      // The caller reports the timeout; a failed kill changes nothing for it.
    }
  }
}

interface ExecStatus {
  exited: boolean;
  exitcode?: number;
  signal?: number;
  'out-data'?: string;
  'err-data'?: string;
  'out-truncated'?: boolean;
  'err-truncated'?: boolean;
}

function execResult(s: ExecStatus): GuestExecResult {
  const result: GuestExecResult = {
    exitCode: s.signal !== undefined ? 128 + s.signal : s.exitcode ?? 0,
    stdout: Buffer.from(s['out-data'] ?? '', 'base64'),
    stderr: Buffer.from(s['err-data'] ?? '', 'base64'),
    truncated: s['out-truncated'] === true || s['err-truncated'] === true,
  };
  if (s.signal !== undefined) result.signal = s.signal;
  return result;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

function formatSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}
