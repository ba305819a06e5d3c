/**
 * QEMU guest agent client (qemu-guest-agent in the guest, reached through the domain's
 * `org.qemu.guest_agent.0` virtio-serial channel, whose host end is a unix socket QEMU listens on).
 *
 * Protocol (QEMU's qga/qapi-schema.json): JSON commands, one JSON response each. Because the
 * channel keeps bytes across agent restarts and clients, every connection first resynchronises:
 * the client sends 0xFF (the agent drops any half-read command) and `guest-sync-delimited` with a
 * random id; the agent answers 0xFF then {"return": id}; everything before that is stale.
 * Exec: `guest-exec` (path, arg, input-data base64, capture-output) answers the guest pid;
 * `guest-exec-status` answers exited, exitcode or signal, and out-data/err-data (base64) once the
 * process has exited. The agent has no pty and no streaming of stdin or output.
 *
 * QEMU's socket serves one client at a time, so one GuestAgent per socket runs its commands one
 * after another on one connection and reconnects (and resynchronises) after any failure.
 */
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { Code, DeadlineExceededError, FailedPreconditionError, VmletError, errorText } from '../errors.js';

/** How long a guest that does not answer guest-sync-delimited gets before FAILED_PRECONDITION. */
export const DEFAULT_SYNC_TIMEOUT_MS = 5_000;
export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;
/** Refused larger: the agent's own JSON parser limit is far below this. */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

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
  private socket: net.Socket | undefined;
  private synced = false;
  private buffer = Buffer.alloc(0);
  private waiter: { resolve: (v: unknown) => void; reject: (e: Error) => void } | undefined;
  private wantSyncId: number | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(
    readonly socketPath: string,
    private readonly syncTimeoutMs = DEFAULT_SYNC_TIMEOUT_MS,
  ) {}

  /** Runs one agent command; commands of one agent run one at a time. */
  execute<T = unknown>(command: string, args?: object, timeoutMs = DEFAULT_COMMAND_TIMEOUT_MS): Promise<T> {
    const run = this.chain.then(() => this.executeNow(command, args, timeoutMs));
    this.chain = run.catch(() => undefined);
    return run as Promise<T>;
  }

  /**
   * Resolves once an agent answers on the channel (connecting and resynchronising if needed);
   * FAILED_PRECONDITION after the bounded sync wait when none does.
   */
  ready(): Promise<void> {
    return this.execute('guest-ping').then(() => undefined);
  }

  close(): void {
    this.closed = true;
    this.drop(new FailedPreconditionError('guest agent connection closed'));
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

  private async executeNow(command: string, args: object | undefined, timeoutMs: number): Promise<unknown> {
    if (this.closed) throw new FailedPreconditionError('guest agent connection closed');
    await this.ensureSynced();
    const message = JSON.stringify(args ? { execute: command, arguments: args } : { execute: command });
    return this.await(message, timeoutMs, () => new DeadlineExceededError(`guest agent did not answer ${command} within ${timeoutMs} ms`));
  }

  private async ensureSynced(): Promise<void> {
    if (this.socket && this.synced) return;
    this.drop();
    const socket = await connect(this.socketPath, this.syncTimeoutMs);
    this.socket = socket;
    this.buffer = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (err) => this.drop(new FailedPreconditionError(`guest agent socket ${this.socketPath}: ${errorText(err)}`)));
    socket.on('close', () => this.drop(new FailedPreconditionError(`guest agent socket ${this.socketPath} closed`)));
    const id = randomInt(1, 2 ** 31);
    this.wantSyncId = id;
    socket.write(Buffer.from([0xff]));
    await this.await(
      JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } }),
      this.syncTimeoutMs,
      () => new FailedPreconditionError(`no guest agent answers on ${this.socketPath} (waited ${this.syncTimeoutMs} ms): is qemu-guest-agent running in the guest?`),
    );
    this.synced = true;
  }

  private await(message: string, timeoutMs: number, onTimeout: () => Error): Promise<unknown> {
    const socket = this.socket;
    if (!socket) return Promise.reject(new FailedPreconditionError('guest agent not connected'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const err = onTimeout();
        this.waiter = undefined;
        this.drop();
        reject(err);
      }, timeoutMs);
      this.waiter = {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      socket.write(`${message}\n`);
    });
  }

  private onData(data: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, data]);
    if (this.buffer.length > MAX_RESPONSE_BYTES) return this.drop(new FailedPreconditionError('guest agent response too large'));
    if (this.wantSyncId !== undefined) {
      // Everything up to the agent's 0xFF delimiter is stale.
      const ff = this.buffer.lastIndexOf(0xff);
      if (ff < 0) {
        this.buffer = Buffer.alloc(0);
        return;
      }
      this.buffer = this.buffer.subarray(ff + 1);
    }
    for (let nl; (nl = this.buffer.indexOf(0x0a)) >= 0; ) {
      const line = this.buffer.subarray(0, nl).toString('utf8').trim();
      this.buffer = this.buffer.subarray(nl + 1);
      if (!line) continue;
      let doc: { return?: unknown; error?: { class?: string; desc?: string } };
      try {
        doc = JSON.parse(line);
      } catch {
        continue;
      }
      if (this.wantSyncId !== undefined) {
        if (doc.return !== this.wantSyncId) continue;
        this.wantSyncId = undefined;
      }
      const waiter = this.waiter;
      this.waiter = undefined;
      if (!waiter) continue;
      if (doc.error) waiter.reject(new GuestAgentError(doc.error.class ?? 'GenericError', doc.error.desc ?? 'unknown error'));
      else waiter.resolve(doc.return);
    }
  }

  private drop(err?: Error): void {
    const socket = this.socket;
    this.socket = undefined;
    this.synced = false;
    this.wantSyncId = undefined;
    socket?.destroy();
    const waiter = this.waiter;
    this.waiter = undefined;
    if (waiter && err) waiter.reject(err);
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

/**
 * Connects to QEMU's end of the channel. QEMU serves one client and keeps a small backlog; while it
 * has not yet noticed that an earlier client left, connect fails with EAGAIN, so that is retried
 * until the deadline.
 */
async function connect(path: string, timeoutMs: number): Promise<net.Socket> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await connectOnce(path, Math.max(1, deadline - Date.now()));
    } catch (err) {
      const busy = (err as { busy?: boolean }).busy === true;
      if (!busy || Date.now() + 100 >= deadline) {
        if (busy) throw new FailedPreconditionError(`guest agent socket ${path} stayed busy for ${timeoutMs} ms (QEMU still holds an earlier connection)`);
        throw err;
      }
      await sleep(100);
    }
  }
}

function connectOnce(path: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(path);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new FailedPreconditionError(`guest agent socket ${path} did not accept within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'EAGAIN') return reject(Object.assign(new Error('busy'), { busy: true }));
      const why = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'the VM is not running or has no guest agent channel' : errorText(err);
      reject(new FailedPreconditionError(`guest agent socket ${path}: ${why}`));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
