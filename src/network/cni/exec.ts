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

/** A plugin call known before its config is: everything but what goes to its stdin. */
export type PluginLaunch = Omit<PluginRequest, 'config'>;

export interface PluginRunner {
  /** Runs one plugin; resolves with its stdout as parsed JSON, or undefined when it printed nothing. */
  run(req: PluginRequest): Promise<unknown>;
  /**
   * Optional: starts the plugin `launch` names now, with its stdin held open, so that the run()
   * of the same call (same command, plugin, container, netns, ifname, args) only hands it its
   * config: the process start and the plugin's own start-up (a Go runtime) happen while the caller
   * still works. A plugin reads its stdin before it acts (libcni's skel does), so nothing happens
   * before that run(). Returns the discard: kills the process if no run() took it (call it always,
   * when the work is over; a run() that differs in anything spawns afresh).
   */
  prestart?(launch: PluginLaunch): () => void;
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
/** A prestarted plugin no run() took within this is killed (a caller that never discards leaks nothing). */
const PRESTART_IDLE_MS = 30_000;

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
  /**
   * ms from spawn() to the child's 'spawn' event; from its config written to its stdin to its exit
   * and to its pipes closing; and (prestarted) how long before that write it was spawned.
   */
  timing: { spawnedMs: number; exitedMs: number; closedMs: number; aheadMs?: number };
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
  /** Prestarted processes by launchKey, oldest first. */
  private readonly prestarted = new Map<string, PrestartEntry[]>();

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
    const proc = this.takePrestarted(req, binary) ?? this.startProcess(req.pluginType, binary, env);
    const out = await proc.feed(JSON.stringify(req.config));
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
    this.logger.debug({ ...base, lookupMs: round2(lookupMs), ...out.timing, ...(out.timing.aheadMs !== undefined ? { prestarted: true } : {}) }, 'CNI plugin ran');
    if (out.stdout.trim() === '') return undefined;
    try {
      return JSON.parse(out.stdout);
    } catch (err) {
      throw new CniPluginError({ ...info, kind: 'bad-output' }, `printed something that is not JSON: ${tail(out.stdout, 200)}`, { cause: err });
    }
  }

  /** See PluginRunner.prestart. */
  prestart(launch: PluginLaunch): () => void {
    const key = launchKey(launch);
    const entry: PrestartEntry = { key, discarded: false };
    const list = this.prestarted.get(key) ?? [];
    list.push(entry);
    this.prestarted.set(key, list);
    void findPlugin(launch.pluginType, this.binDirs, launch.command).then(
      (binary) => {
        if (entry.discarded) return;
        entry.binary = binary;
        entry.proc = this.startProcess(launch.pluginType, binary, buildPluginEnv({ ...launch, binDirs: this.binDirs, path: this.path }), true);
        entry.idleTimer = setTimeout(() => this.discard(entry), PRESTART_IDLE_MS);
        entry.idleTimer.unref();
      },
      // No executable: the run() finds that out itself and reports it.
      () => {
        this.forget(entry);
      },
    );
    return () => this.discard(entry);
  }

  /** Pids of the prestarted processes spawned and not yet taken or discarded (for tests). */
  prestartedPids(): number[] {
    return [...this.prestarted.values()].flat().flatMap((e) => (e.proc?.pid !== undefined ? [e.proc.pid] : []));
  }

  /** The prestarted process of exactly this call, when there is one alive and started from `binary`. */
  private takePrestarted(req: PluginRequest, binary: string): PluginProcess | undefined {
    const list = this.prestarted.get(launchKey(req));
    const entry = list?.find((e) => e.proc !== undefined);
    if (!entry) return undefined;
    this.forget(entry);
    clearTimeout(entry.idleTimer);
    // A plugin that exited (or was replaced in the bin dirs) meanwhile is not this call's process.
    if (entry.binary !== binary || !entry.proc!.waiting()) {
      entry.proc!.kill();
      return undefined;
    }
    return entry.proc;
  }

  private discard(entry: PrestartEntry): void {
    if (entry.discarded) return;
    entry.discarded = true;
    clearTimeout(entry.idleTimer);
    // Taken by a run(): it is that run's now.
    if (!this.forget(entry)) return;
    entry.proc?.kill();
  }

  /** Removes the entry from the map; false when it was not there (taken). */
  private forget(entry: PrestartEntry): boolean {
    const list = this.prestarted.get(entry.key);
    const at = list?.indexOf(entry) ?? -1;
    if (at === -1) return false;
    list!.splice(at, 1);
    if (list!.length === 0) this.prestarted.delete(entry.key);
    return true;
  }

  /**
   * Spawns the plugin with its stdin open; feed() writes the config, closes stdin, starts the
   * timeout and resolves once the process exited and its pipes closed.
   */
  private startProcess(plugin: string, binary: string, env: Record<string, string>, prestarted = false): PluginProcess {
    // Own process group, so a timeout also reaches the IPAM plugin it delegated to.
    const t0 = performance.now();
    const child = spawn(binary, [], { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const timing: ProcessOutcome['timing'] = { spawnedMs: NaN, exitedMs: NaN, closedMs: NaN };
    let fedAt = t0;
    let exited = false;
    child.once('spawn', () => (timing.spawnedMs = round2(performance.now() - t0)));
    child.once('exit', () => {
      exited = true;
      timing.exitedMs = round2(performance.now() - fedAt);
    });
    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stdoutOverflow = false;
    let stderr = '';
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    const killGroup = () => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
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
    let spawnError: Error | undefined;
    const outcome = new Promise<ProcessOutcome>((resolve, reject) => {
      child.on('error', (err) => {
        spawnError = err;
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
        timing.closedMs = round2(performance.now() - fedAt);
        resolve({ pid: child.pid, timing, exitCode, signal, stdout: Buffer.concat(stdout).toString('utf8'), stderr, timedOut, stdoutOverflow });
      });
    });
    // Nobody may ever feed a prestarted process: its outcome must not become an unhandled rejection.
    outcome.catch(() => {});
    return {
      pid: child.pid,
      waiting: () => !exited && spawnError === undefined && child.exitCode === null && child.signalCode === null,
      kill: () => {
        killGroup();
        child.stdin.destroy();
        child.stdout.destroy();
        child.stderr.destroy();
      },
      feed: (stdin: string) => {
        const now = performance.now();
        if (prestarted) timing.aheadMs = round2(now - t0);
        fedAt = now;
        timer = setTimeout(() => {
          timedOut = true;
          killGroup();
          // A stray grandchild holding our pipes must not keep 'close' from firing.
          child.stdout.destroy();
          child.stderr.destroy();
        }, this.timeoutMs);
        child.stdin.end(stdin);
        return outcome;
      },
    };
  }
}

/** A plugin process, spawned with its stdin still open. */
interface PluginProcess {
  pid: number | undefined;
  /** Alive and not yet exited: it still waits for its config. */
  waiting(): boolean;
  kill(): void;
  feed(stdin: string): Promise<ProcessOutcome>;
}

interface PrestartEntry {
  key: string;
  discarded: boolean;
  binary?: string;
  proc?: PluginProcess;
  idleTimer?: NodeJS.Timeout;
}

/** What makes two calls the same process (the environment buildPluginEnv makes of them). */
function launchKey(l: PluginLaunch): string {
  return JSON.stringify([l.command, l.pluginType, l.containerId, l.netns, l.ifName, l.cniArgs]);
}

function round2(ms: number): number {
  return Math.round(ms * 100) / 100;
}
