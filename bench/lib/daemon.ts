/**
 * Builds and starts a real `vmlet serve` for a benchmark, with its own dirs and socket, and keeps
 * its JSON log lines (serve's and the forked netd's share the pipe) for the breakdowns.
 *
 * Two ways to run the sources: "dist" compiles them with tsc into a temp dir and runs plain node,
 * as `bin/vmlet` does after `npm run build` (production); "tsx" runs the .ts sources under tsx as
 * the integration tests do. They differ where vmlet starts Node children (netd's DHCP socket
 * helper): under tsx every child also loads tsx.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { access, copyFile, mkdir, symlink } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { CriRuntimeClient } from './cri_client.js';
import { findChildren, readMemory, type MemoryReading } from './proc.js';
import { RUN_LABEL } from './pods.js';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export type RuntimeMode = 'dist' | 'tsx';

/** Node arguments that run one of the project's entry points in the chosen mode. */
export interface EntryPoints {
  mode: RuntimeMode;
  /** `node <serve...> serve --flags` */
  serve: string[];
  /** `node <spans...> <args>`: the bench's netd span probe. */
  netdSpans: string[];
  /** `node <listReference...> <args>`: the bare grpc-js ListPodSandbox server. */
  listReference: string[];
  /** Wall time of the tsc build (dist only). */
  buildMs?: number;
  /** tsc's own complaints: it still emits JavaScript on type errors, which is enough to run. */
  buildDiagnostics?: string;
}

/** Compiles src/ and bench/ into `buildDir` (dist) or points at the .ts files (tsx). */
export async function prepareEntryPoints(mode: RuntimeMode, buildDir: string): Promise<EntryPoints> {
  if (mode === 'tsx') {
    return {
      mode,
      serve: ['--import', 'tsx', join(REPO_ROOT, 'src', 'main.ts')],
      netdSpans: ['--expose-gc', '--import', 'tsx', join(REPO_ROOT, 'bench', 'sandbox', 'netd_spans.ts')],
      listReference: ['--import', 'tsx', join(REPO_ROOT, 'bench', 'sandbox', 'list_reference_server.ts')],
    };
  }
  const started = performance.now();
  const tsc = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const diagnostics = await new Promise<string>((resolve) => {
    execFile(
      process.execPath,
      [tsc, '-p', join(REPO_ROOT, 'bench', 'tsconfig.json'), '--outDir', buildDir, '--noEmit', 'false', '--sourceMap', 'false'],
      { cwd: REPO_ROOT, maxBuffer: 16 * 2 ** 20 },
      (err, stdout) => resolve(err ? stdout.trim() || err.message : ''),
    );
  });
  // The compiled tree must find what the sources find two levels up: proto/, the native helper,
  // package.json, node_modules.
  await symlink(join(REPO_ROOT, 'proto'), join(buildDir, 'proto'));
  await symlink(join(REPO_ROOT, 'native'), join(buildDir, 'native'));
  await symlink(join(REPO_ROOT, 'node_modules'), join(buildDir, 'node_modules'));
  await copyFile(join(REPO_ROOT, 'package.json'), join(buildDir, 'package.json'));
  const serveMain = join(buildDir, 'src', 'main.js');
  const spans = join(buildDir, 'bench', 'sandbox', 'netd_spans.js');
  const listReference = join(buildDir, 'bench', 'sandbox', 'list_reference_server.js');
  for (const file of [serveMain, spans, listReference]) {
    try {
      await access(file);
    } catch {
      throw new Error(`tsc did not produce ${file}:\n${diagnostics}`);
    }
  }
  return {
    mode,
    serve: [serveMain],
    netdSpans: ['--expose-gc', spans],
    listReference: [listReference],
    buildMs: performance.now() - started,
    ...(diagnostics ? { buildDiagnostics: diagnostics } : {}),
  };
}

export interface DaemonDirs {
  socket: string;
  stateDir: string;
  imageDir: string;
  cniConfDir: string;
  cniBinDirs: readonly string[];
  translationsDir: string;
}

export type LogLine = Record<string, unknown> & { msg?: string; name?: string };

export class BenchDaemon {
  /** Parsed JSON log lines in arrival order; an index into it marks a point in time. */
  readonly logs: LogLine[] = [];
  readonly client: CriRuntimeClient;
  private rawTail = '';
  private readonly exited: Promise<number | null>;

  private constructor(
    readonly child: ChildProcess,
    readonly dirs: DaemonDirs,
  ) {
    let partial = '';
    const onData = (chunk: Buffer) => {
      const text = partial + chunk.toString('utf8');
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) this.addLine(line);
    };
    child.stdout!.on('data', onData);
    // VMLET_BENCH_DAEMON_LOG=<prefix>: every line the daemon prints also goes to <prefix>.<pid>.log.
    const copyTo = process.env.VMLET_BENCH_DAEMON_LOG;
    if (copyTo) {
      const copy = createWriteStream(`${copyTo}.${child.pid}.log`);
      child.stdout!.on('data', (chunk: Buffer) => copy.write(chunk));
      child.stdout!.once('close', () => copy.end());
    }
    child.stderr!.on('data', (chunk: Buffer) => this.keepTail(chunk.toString('utf8')));
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : null))));
    this.client = new CriRuntimeClient(dirs.socket);
  }

  private addLine(line: string): void {
    this.keepTail(`${line}\n`);
    if (!line.startsWith('{')) return;
    try {
      this.logs.push(JSON.parse(line) as LogLine);
    } catch {
      // Two processes share the pipe; a line longer than PIPE_BUF can arrive torn. Not ours to fix.
    }
  }

  private keepTail(text: string): void {
    this.rawTail = (this.rawTail + text).slice(-32_768);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The last 32 KiB of what the daemon printed, for error messages. */
  output(): string {
    return this.rawTail;
  }

  /** `extraArgs` go after the bench's own flags (a later flag wins). */
  static async start(entry: EntryPoints, dirs: DaemonDirs, logLevel: string, extraArgs: readonly string[] = [], readyTimeoutMs = 90_000): Promise<BenchDaemon> {
    // The daemon's base dir (socket, state and images below it) must be traversable by QEMU's user
    // (--qemu-user); a recursive mkdir would give it the socket dir's 0700.
    await mkdir(dirname(dirname(dirs.socket)), { recursive: true, mode: 0o711 });
    await mkdir(dirname(dirs.socket), { recursive: true, mode: 0o700 });
    const args = [
      ...entry.serve,
      'serve',
      '--socket', dirs.socket,
      '--state-dir', dirs.stateDir,
      '--image-dir', dirs.imageDir,
      '--cni-conf-dir', dirs.cniConfDir,
      '--cni-bin-dir', dirs.cniBinDirs.join(':'),
      '--image-translations-dir', dirs.translationsDir,
      '--kvm', 'off',
      '--log-level', logLevel,
      ...extraArgs,
    ];
    // Own process group: a Ctrl-C at the terminal reaches the bench, which then removes the
    // sandboxes through this daemon before stopping it.
    const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const daemon = new BenchDaemon(child, dirs);
    const deadline = Date.now() + readyTimeoutMs;
    while (!daemon.logs.some((l) => l.msg === 'CRI server listening')) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`vmlet serve exited (${child.exitCode ?? child.signalCode}) before listening:\n${daemon.output()}`);
      }
      if (Date.now() > deadline) {
        await daemon.stop(0);
        throw new Error(`vmlet serve did not listen within ${readyTimeoutMs} ms:\n${daemon.output()}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    return daemon;
  }

  /**
   * Waits until `count` lines matching `match` arrived after index `from`. serve logs a call's
   * "rpc" line before it answers, and netd's lines for that call come before it on the shared
   * pipe, so once the rpc lines are in, everything about those calls is.
   */
  async waitForLines(from: number, match: (line: LogLine) => boolean, count: number, timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.logs.slice(from).filter(match).length < count) {
      if (Date.now() > deadline || !this.running) return false;
      await new Promise((r) => setTimeout(r, 10));
    }
    return true;
  }

  /** netd: serve's child running `netd`. */
  async netdPid(): Promise<number | undefined> {
    return (await findChildren(this.pid, ['netd']))[0];
  }

  async memory(): Promise<{ serve?: MemoryReading; netd?: MemoryReading }> {
    const netd = await this.netdPid();
    return { serve: await readMemory(this.pid), netd: netd === undefined ? undefined : await readMemory(netd) };
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGTERM (serve drains and stops netd), SIGKILL to the pid after `graceMs`; resolves with the exit code. */
  async stop(graceMs = 20_000): Promise<number | null> {
    this.client.close();
    if (this.running) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      const code = await this.exited;
      clearTimeout(timer);
      return code;
    }
    return this.exited;
  }
}

/** A daemon's own socket, state, image and translation dirs below `base`. */
export function daemonDirs(base: string, cniConfDir: string, binDirs: string[]): DaemonDirs {
  return {
    socket: join(base, 'run', 'vmlet.sock'),
    stateDir: join(base, 'state'),
    imageDir: join(base, 'images'),
    cniConfDir,
    cniBinDirs: binDirs,
    translationsDir: join(base, 'translations'),
  };
}

/** The bench, serve and netd: the processes whose CPU time is ours (children count once reaped). */
export async function ownPids(daemon: BenchDaemon): Promise<number[]> {
  const netd = await daemon.netdPid();
  return [process.pid, daemon.pid, ...(netd !== undefined ? [netd] : [])];
}

/** How the daemon under test was built, as the result JSON records it. */
export interface RuntimeInfo {
  mode: RuntimeMode;
  buildMs?: number;
  buildDiagnostics?: string;
}

/** prepareEntryPoints with the bench's progress lines; also returns what the result records. */
export async function buildDaemon(mode: RuntimeMode, buildDir: string, step: (text: string) => void): Promise<{ entry: EntryPoints; runtime: RuntimeInfo }> {
  step(mode === 'dist' ? 'building the daemon with tsc' : 'using the .ts sources under tsx');
  await mkdir(buildDir, { recursive: true });
  const entry = await prepareEntryPoints(mode, buildDir);
  const runtime: RuntimeInfo = { mode: entry.mode, ...(entry.buildMs !== undefined ? { buildMs: entry.buildMs } : {}), ...(entry.buildDiagnostics ? { buildDiagnostics: entry.buildDiagnostics } : {}) };
  if (entry.buildDiagnostics) step(`tsc reported type errors (JavaScript emitted anyway; see the JSON): ${entry.buildDiagnostics.split('\n')[0]}`);
  return { entry, runtime };
}

/**
 * Cleanup's first part, through the product's own teardown as kubelet would do it: for each
 * daemon still running, removes the sandboxes labelled with the run's `tag` (their containers
 * first, with `containers`), then stops the daemon. Failures are noted, not thrown.
 */
export async function removeThroughDaemons(
  daemons: readonly BenchDaemon[],
  tag: string,
  opts: { containers: boolean },
  errors: string[],
  note: (what: string, err: unknown) => void,
): Promise<void> {
  for (const daemon of daemons) {
    if (!daemon.running) continue;
    try {
      const { items } = await daemon.client.call<{ items: { id: string }[] }>('ListPodSandbox', { filter: { label_selector: { [RUN_LABEL]: tag } } }, 30_000);
      for (const item of items) {
        if (opts.containers) {
          const { containers } = await daemon.client.call<{ containers: { id: string }[] }>('ListContainers', { filter: { pod_sandbox_id: item.id } }, 30_000);
          for (const c of containers) {
            await daemon.client.call('RemoveContainer', { container_id: c.id }, 120_000).catch((err: unknown) => note(`remove container ${c.id}`, err));
          }
        }
        await daemon.client.call('RemovePodSandbox', { pod_sandbox_id: item.id }, 120_000).catch((err: unknown) => note(`remove sandbox ${item.id}`, err));
      }
    } catch (err) {
      note('list the bench sandboxes for cleanup', err);
    }
    try {
      const code = await daemon.stop();
      if (code !== 0) errors.push(`vmlet serve (pid ${daemon.pid}) exited with ${code}`);
    } catch (err) {
      note('stop daemon', err);
    }
  }
}
