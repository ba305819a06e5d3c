/**
 * Gets a UDP socket bound to the DHCP server port inside a sandbox's network namespace while the
 * server itself stays in the host namespace: a short-lived child entered into the namespace with
 * nsenter binds the port and passes the socket back over its IPC channel (SCM_RIGHTS).
 */
import { spawn } from 'node:child_process';
import type dgram from 'node:dgram';
import { stat } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { extname, isAbsolute, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
  errorText,
} from '../../errors.js';

export interface BindInNetnsOptions {
  /** UDP port to bind; the DHCP server port unless a test says otherwise. */
  port?: number;
  /** Upper bound for the whole handoff, child start-up included. */
  timeoutMs?: number;
  /** nsenter binary (util-linux). */
  nsenterPath?: string;
}

export const DHCP_SERVER_PORT = 67;
const DEFAULT_TIMEOUT_MS = 10_000;
const STDERR_LIMIT = 4096;
const STDERR_GRACE_MS = 500;

type ChildMessage = { kind: 'bound'; port: number } | { kind: 'error'; code: string; message: string };

/** Binds 0.0.0.0:port (67 by default) in the namespace at `netnsPath` and returns the socket to this process. */
export async function bindDhcpSocketInNetns(netnsPath: string, options: BindInNetnsOptions = {}): Promise<dgram.Socket> {
  validateNetnsPath(netnsPath);
  const port = options.port ?? DHCP_SERVER_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`port ${port} is not in 1..65535`);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  try {
    await stat(netnsPath);
  } catch (err) {
    throw new NotFoundError(`network namespace ${netnsPath} is not there: ${errorText(err)}`, { cause: err });
  }

  const child = spawn(
    options.nsenterPath ?? 'nsenter',
    [`--net=${netnsPath}`, '--', process.execPath, ...childExecArgv(process.execArgv), childScriptPath(), String(port)],
    { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    if (stderr.length < STDERR_LIMIT) stderr += chunk.slice(0, STDERR_LIMIT - stderr.length);
  });
  const stderrEnded = new Promise<void>((resolve) => {
    child.stderr?.once('close', () => resolve());
  });
  // 'exit', not 'close': once a handle has crossed the IPC channel, Node does not always emit 'close'.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });

  let socket: dgram.Socket | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    const outcome = await new Promise<{ message: ChildMessage; handle?: dgram.Socket }>((resolve, reject) => {
      timer = setTimeout(
        () => reject(new DeadlineExceededError(`binding port ${port} in ${netnsPath} took longer than ${timeoutMs} ms`)),
        timeoutMs,
      );
      child.once('error', (err) => reject(new UnavailableError(`cannot start nsenter: ${err.message}`, { cause: err })));
      child.on('message', (message: ChildMessage, handle?: dgram.Socket) => {
        if (handle) socket = handle;
        resolve({ message, handle });
      });
      void exited.then(async ({ code, signal }) => {
        // nsenter's own complaint (bad namespace, missing binary) arrives on stderr.
        await Promise.race([stderrEnded, delay(STDERR_GRACE_MS)]);
        reject(
          new UnavailableError(
            `socket helper in ${netnsPath} exited (${signal ?? `code ${code}`}) before handing over a socket: ${stderr.trim()}`,
          ),
        );
      });
    });
    if (outcome.message.kind === 'error') {
      throw new FailedPreconditionError(
        `cannot bind UDP port ${port} in ${netnsPath}: ${outcome.message.code} ${outcome.message.message}`,
      );
    }
    if (!outcome.handle) throw new UnavailableError('socket helper reported success without passing a socket');
    const bound = outcome.handle;
    await releaseChild(child, exited, timeoutMs, netnsPath);
    socket = undefined;
    return bound;
  } finally {
    clearTimeout(timer);
    if (socket) socket.close();
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  }
}

/** Lets the child go (it closes its copy and exits) and reaps it, killing it if it lingers. */
async function releaseChild(
  child: ReturnType<typeof spawn>,
  exited: Promise<unknown>,
  timeoutMs: number,
  netnsPath: string,
): Promise<void> {
  if (child.connected) child.disconnect();
  let timer: NodeJS.Timeout | undefined;
  const lingering = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  try {
    if ((await Promise.race([exited, lingering])) === 'timeout') {
      child.kill('SIGKILL');
      await exited;
      throw new DeadlineExceededError(`socket helper in ${netnsPath} did not exit after handing over the socket`);
    }
  } finally {
    clearTimeout(timer);
  }
}

/** A namespace file path: absolute, already normalised, nothing to smuggle into nsenter's argument. */
function validateNetnsPath(path: string): void {
  if (typeof path !== 'string' || path.length === 0 || path.length > 4096 || path.includes('\0')) {
    throw new InvalidArgumentError('network namespace path must be a non-empty string without NUL');
  }
  if (!isAbsolute(path) || normalize(path) !== path || path.endsWith('/')) {
    throw new InvalidArgumentError(`network namespace path ${JSON.stringify(path)} must be absolute and normalised`);
  }
}

/** The helper next to this module: .ts when running from src under tsx, .js from dist. */
function childScriptPath(): string {
  const self = fileURLToPath(import.meta.url);
  return fileURLToPath(new URL(`./bind_socket_child${extname(self)}`, import.meta.url));
}

const droppedFlags = new Set([
  '--test', '--test-only', '--experimental-test-coverage', '--experimental-test-snapshots', '--inspect', '--inspect-brk',
  '--inspect-wait', '--watch', '--watch-preserve-output', '--cpu-prof', '--heap-prof', '--prof', '--interactive', '-i',
  '--check', '-c',
]);
const droppedFlagsWithValue = new Set([
  '--test-reporter', '--test-reporter-destination', '--test-name-pattern', '--test-skip-pattern', '--test-concurrency',
  '--test-timeout', '--test-shard', '--test-coverage-include', '--test-coverage-exclude', '--inspect-port', '--debug-port',
  '--watch-path', '--cpu-prof-dir', '--cpu-prof-name', '--cpu-prof-interval', '--heap-prof-dir', '--heap-prof-name',
  '--heap-prof-interval', '--eval', '-e', '--print', '-p',
]);

/**
 * The parent's Node flags minus those that would make the helper a test runner, debugger target,
 * watcher or eval: loaders such as `--import tsx` must carry over so the .ts helper runs.
 */
export function childExecArgv(execArgv: readonly string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!;
    const name = arg.includes('=') ? arg.slice(0, arg.indexOf('=')) : arg;
    if (droppedFlagsWithValue.has(name)) {
      if (name === arg) i += 1; // the value is the next token
      continue;
    }
    if (droppedFlags.has(name) || name.startsWith('--inspect') || name.startsWith('--test-')) continue;
    kept.push(arg);
  }
  return kept;
}
