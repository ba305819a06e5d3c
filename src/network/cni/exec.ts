/**
 * Runs CNI plugin executables. `PluginRunner` is the narrow seam the chain talks to (unit tests
 * fake it); `ExecPluginRunner` is the real one: bin-dir lookup, a clean environment, stdin
 * config, a per-call timeout, stderr capture and the plugin's error JSON turned into CniPluginError.
 */
import { spawn } from 'node:child_process';
import { access, stat } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { isAbsolute, join, normalize } from 'node:path';
import { InvalidArgumentError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { isValidPluginType } from './config.js';
import { CniPluginError } from './errors.js';
import { buildPluginEnv, type CniCommand } from './invocation.js';

export interface PluginRequest {
  command: CniCommand;
  /** The `type` of the list entry: the executable's name. */
  pluginType: string;
  containerId: string;
  /** Netns path; "" on a DEL whose netns is already gone. */
  netns: string;
  ifName: string;
  cniArgs: string;
  /** The execution configuration written to the plugin's stdin. */
  config: Record<string, unknown>;
}

export interface PluginRunner {
  /** Runs one plugin; resolves with its stdout as parsed JSON, or undefined when it printed nothing. */
  run(req: PluginRequest): Promise<unknown>;
}

export interface ExecPluginRunnerOptions {
  /** Colon-separated list (or array) of directories holding plugin executables, searched in order. */
  binDirs: string | readonly string[];
  /** Per-call limit; the plugin (and its process group: delegated IPAM) is killed past it. */
  timeoutMs?: number;
  logger?: Logger;
  /** PATH handed to plugins (they run iptables, ip, …); defaults to the host's. */
  path?: string;
}

export const DEFAULT_PLUGIN_TIMEOUT_MS = 60_000;
/** A result is a few KiB; more than this on stdout is a broken or hostile plugin. */
const MAX_STDOUT_BYTES = 4 * 1024 * 1024;
/** How much of stderr is kept for logs and error messages. */
const MAX_STDERR_BYTES = 64 * 1024;
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Splits and checks a CNI bin-dir list: absolute paths only, no "..", duplicates dropped. */
export function parseBinDirs(dirs: string | readonly string[]): string[] {
  const parts = typeof dirs === 'string' ? dirs.split(':') : [...dirs];
  const out: string[] = [];
  for (const dir of parts) {
    if (dir === '') continue;
    if (!isAbsolute(dir) || dir.split('/').includes('..') || dir.includes('\0')) {
      throw new InvalidArgumentError(`CNI bin dir ${JSON.stringify(dir)} must be an absolute path without ".."`);
    }
    const clean = normalize(dir).replace(/(.)\/+$/, '$1');
    if (!out.includes(clean)) out.push(clean);
  }
  if (out.length === 0) throw new InvalidArgumentError('no CNI bin dir given');
  return out;
}

/** The executable for `type` in the first bin dir that has one. */
export async function findPlugin(type: string, binDirs: readonly string[], command = 'ADD'): Promise<string> {
  if (!isValidPluginType(type)) {
    throw new InvalidArgumentError(`CNI plugin type ${JSON.stringify(type)} is not a plugin name`);
  }
  for (const dir of binDirs) {
    const candidate = join(dir, type);
    try {
      const st = await stat(candidate);
      if (!st.isFile()) continue;
      await access(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // Not in this dir (or not executable): try the next one.
    }
  }
  throw new CniPluginError(
    { kind: 'not-found', plugin: type, command },
    `failed: no executable "${type}" in ${binDirs.join(':')}`,
  );
}

function tail(text: string, max = 2000): string {
  const t = text.trim();
  return t.length > max ? `…${t.slice(t.length - max)}` : t;
}

/** The spec's error object: {cniVersion, code, msg, details}. */
function parsePluginError(stdout: string): { code?: number; msg: string; details?: string } | undefined {
  try {
    const doc: unknown = JSON.parse(stdout);
    if (typeof doc !== 'object' || doc === null) return undefined;
    const { code, msg, details } = doc as Record<string, unknown>;
    if (typeof msg !== 'string' && typeof code !== 'number') return undefined;
    return {
      code: typeof code === 'number' ? code : undefined,
      msg: typeof msg === 'string' ? msg : '',
      details: typeof details === 'string' && details !== '' ? details : undefined,
    };
  } catch {
    return undefined;
  }
}

interface ProcessOutcome {
  pid: number | undefined;
  /** ms from spawn() to the child's 'spawn' event, to its exit, and to its pipes closing. */
  timing: { spawnedMs: number; exitedMs: number; closedMs: number };
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  stdoutOverflow: boolean;
}

export class ExecPluginRunner implements PluginRunner {
  readonly binDirs: readonly string[];
  private readonly timeoutMs: number;
  private readonly logger: Logger;
  private readonly path: string;

  constructor(opts: ExecPluginRunnerOptions) {
    this.binDirs = parseBinDirs(opts.binDirs);
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_PLUGIN_TIMEOUT_MS;
    this.logger = (opts.logger ?? silentLogger).child({ component: 'cni-exec' });
    this.path = opts.path ?? process.env.PATH ?? DEFAULT_PATH;
  }

  async run(req: PluginRequest): Promise<unknown> {
    const lookupStarted = performance.now();
    const binary = await findPlugin(req.pluginType, this.binDirs, req.command);
    const env = buildPluginEnv({ ...req, binDirs: this.binDirs, path: this.path });
    const started = performance.now();
    const lookupMs = started - lookupStarted;
    const out = await this.spawnPlugin(req.pluginType, binary, env, JSON.stringify(req.config));
    const ms = Math.round(performance.now() - started);
    const base = { plugin: req.pluginType, command: req.command, containerId: req.containerId, ifName: req.ifName, ms };
    if (out.stderr.trim() !== '') this.logger.debug({ ...base, stderr: tail(out.stderr) }, 'CNI plugin stderr');
    const info = { plugin: req.pluginType, command: req.command, stderr: out.stderr || undefined, exitCode: out.exitCode, signal: out.signal };

    if (out.timedOut) {
      this.logger.warn({ ...base, pid: out.pid }, 'CNI plugin timed out and was killed');
      throw new CniPluginError({ ...info, kind: 'timeout' }, `timed out after ${this.timeoutMs} ms and was killed (pid ${out.pid})`);
    }
    if (out.stdoutOverflow) {
      throw new CniPluginError({ ...info, kind: 'bad-output' }, `printed more than ${MAX_STDOUT_BYTES} bytes`);
    }
    if (out.exitCode !== 0) {
      const perr = parsePluginError(out.stdout);
      this.logger.warn({ ...base, exitCode: out.exitCode, signal: out.signal, error: perr, stderr: tail(out.stderr) }, 'CNI plugin failed');
      if (perr) {
        throw new CniPluginError(
          { ...info, kind: 'plugin-error', cniCode: perr.code, pluginMessage: perr.msg, details: perr.details },
          'failed',
        );
      }
      const how = out.signal ? `was killed by ${out.signal}` : `exited with code ${out.exitCode}`;
      const text = tail(out.stderr) || tail(out.stdout);
      throw new CniPluginError({ ...info, kind: 'plugin-error' }, `failed: ${how}${text ? `: ${text}` : ''}`);
    }
    this.logger.debug({ ...base, lookupMs: round2(lookupMs), ...out.timing }, 'CNI plugin ran');
    if (out.stdout.trim() === '') return undefined;
    try {
      return JSON.parse(out.stdout);
    } catch (err) {
      throw new CniPluginError({ ...info, kind: 'bad-output' }, `printed something that is not JSON: ${tail(out.stdout, 200)}`, { cause: err });
    }
  }

  private spawnPlugin(plugin: string, binary: string, env: Record<string, string>, stdin: string): Promise<ProcessOutcome> {
    return new Promise((resolve, reject) => {
      // Own process group, so a timeout also reaches the IPAM plugin it delegated to.
      const t0 = performance.now();
      const child = spawn(binary, [], { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
      const timing = { spawnedMs: NaN, exitedMs: NaN, closedMs: NaN };
      child.once('spawn', () => (timing.spawnedMs = round2(performance.now() - t0)));
      child.once('exit', () => (timing.exitedMs = round2(performance.now() - t0)));
      const stdout: Buffer[] = [];
      let stdoutBytes = 0;
      let stdoutOverflow = false;
      let stderr = '';
      let timedOut = false;
      const killGroup = () => {
        if (child.pid === undefined) return;
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
      };
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup();
        // A stray grandchild holding our pipes must not keep 'close' from firing.
        child.stdout.destroy();
        child.stderr.destroy();
      }, this.timeoutMs);

      child.stdout.on('data', (chunk: Buffer) => {
        stdoutBytes += chunk.length;
        if (stdoutBytes > MAX_STDOUT_BYTES) {
          if (!stdoutOverflow) killGroup();
          stdoutOverflow = true;
          return;
        }
        stdout.push(chunk);
      });
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString('utf8');
        if (stderr.length > MAX_STDERR_BYTES) stderr = stderr.slice(stderr.length - MAX_STDERR_BYTES);
      });
      // A plugin may exit without reading stdin; the EPIPE that follows is not our failure.
      child.stdin.on('error', () => {});
      child.on('error', (err) => {
        clearTimeout(timer);
        reject(
          new CniPluginError(
            { kind: 'spawn-failed', plugin, command: env.CNI_COMMAND ?? '' },
            `could not be started (${binary}): ${err.message}`,
            { cause: err },
          ),
        );
      });
      child.on('close', (exitCode, signal) => {
        clearTimeout(timer);
        timing.closedMs = round2(performance.now() - t0);
        resolve({
          pid: child.pid,
          timing,
          exitCode,
          signal,
          stdout: Buffer.concat(stdout).toString('utf8'),
          stderr,
          timedOut,
          stdoutOverflow,
        });
      });
      child.stdin.end(stdin);
    });
  }
}

function round2(ms: number): number {
  return Math.round(ms * 100) / 100;
}
