/**
 * `npm run bench -- pull [--size-mib 1024] [--rounds 3] [--runtime dist|tsx] [--json FILE]`:
 * vmlet's PullImage of an http URL against the raw loopback HTTP floor, in the same run.
 *
 * The bench writes a raw disk file (a boot-sector marker, then alternating random and zero MiBs),
 * serves it from a separate process (bench/pull/serve_file.py: Python, sendfile(2), so the server
 * copies nothing and bottlenecks neither side; its CPU is counted for nobody) and, in interleaved
 * rounds (the order flips every round), times:
 * - vmlet: a `vmlet serve` started by the bench with its own dirs and no warm VMs; PullImage of
 *   `http://127.0.0.1:<port>/disk.img@sha256:<hex>` through the CRI socket, so vmlet hashes what it
 *   downloads and compares it with the pinned digest before it records the image (and fsyncs it,
 *   and checks the format with qemu-img). The image is removed after each round.
 * - the floor (report.ts says which is which): curl into a file next to vmlet's image dir (same
 *   filesystem), alone, then with `sync FILE`, then with `openssl dgst -sha256` and `sync FILE`.
 * CPU: serve's utime+stime (with reaped children, i.e. qemu-img) for vmlet; the floor's processes
 * (this process's reaped children) for the floor.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { BenchDaemon, REPO_ROOT, buildDaemon, daemonDirs } from '../lib/daemon.js';
import { BenchRun } from '../lib/harness.js';
import { InterruptedError } from '../lib/pool.js';
import { cniBinDirs } from '../lib/network.js';
import { benchPrologue, defaultJsonPath, intOption, oneOfOption, parseBenchArgs } from '../lib/options.js';
import { CLOCK_TICKS_PER_SECOND, processTicks } from '../lib/proc.js';
import { CriImageClient } from '../vm/image_client.js';
import { formatPullReport, pullSpanSeconds, PULL_TOOLS, type PullBenchResult, type PullSample, type PullTool } from './report.js';

export const PULL_USAGE = `usage: npm run bench -- pull [options]   (as root: it starts a vmlet serve)

  --size-mib <MiB>     size of the served raw disk (default 1024)
  --rounds <count>     interleaved rounds of vmlet and the floor (default 3)
  --runtime dist|tsx   daemon from a tsc build run by plain node (default, as in production)
                       or from the .ts sources under tsx
  --json <file>        where to write the results (default bench/results/pull-<time>.json)
`;

interface PullBenchOptions {
  sizeMib: number;
  rounds: number;
  runtime: 'dist' | 'tsx';
  json: string;
}

export function parsePullOptions(argv: readonly string[]): PullBenchOptions | undefined {
  const args = parseBenchArgs(argv, { 'size-mib': 'string', rounds: 'string', runtime: 'string', json: 'string' });
  if (!args) return undefined;
  return {
    sizeMib: intOption(args.str('size-mib'), 'size-mib', 1024, 1, 16384),
    rounds: intOption(args.str('rounds'), 'rounds', 3, 1, 20),
    runtime: oneOfOption(args.str('runtime'), 'runtime', ['dist', 'tsx'] as const, 'dist'),
    json: args.str('json') ?? defaultJsonPath(REPO_ROOT, 'pull', new Date()),
  };
}

const MIB = 2 ** 20;

/** Writes the disk in 1 MiB steps (odd MiBs random, even ones zero) and returns its sha256 hex. */
async function writeDisk(path: string, sizeMib: number): Promise<string> {
  const hash = createHash('sha256');
  const fh = await open(path, 'wx', 0o644);
  try {
    const zeros = Buffer.alloc(MIB);
    for (let i = 0; i < sizeMib; i++) {
      let block = i % 2 === 1 ? randomBytes(MIB) : zeros;
      if (i === 0) {
        block = Buffer.alloc(MIB);
        block.write('vmlet bench disk', 0);
        block[510] = 0x55;
        block[511] = 0xaa;
      }
      hash.update(block);
      await fh.write(block, 0, MIB, i * MIB);
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

/** Starts serve_file.py on the file; resolves with the process and its port. */
async function startServer(file: string): Promise<{ child: ChildProcess; port: number }> {
  // Own process group: a Ctrl-C reaches the bench, which stops the server by pid in its cleanup.
  const child = spawn('/usr/bin/python3', [join(REPO_ROOT, 'bench', 'pull', 'serve_file.py'), file], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('the file server printed no port within 10 s')), 10_000);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /^(\d+)\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the file server exited (${code}): ${err}`));
    });
  });
  return { child, port };
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 1 << 20, timeout: 1_800_000 }, (err, out, stderr) => (err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || err.message}`)) : resolve(out)));
  });
}

/** CPU seconds of this process's reaped children (cutime + cstime). */
async function reapedChildrenCpuSeconds(): Promise<number> {
  const rest = (await readFile('/proc/self/stat', 'utf8')).split(') ').pop()!.split(' ');
  return (Number(rest[13]) + Number(rest[14])) / CLOCK_TICKS_PER_SECOND;
}

async function pidCpuSeconds(pid: number): Promise<number> {
  return processTicks(await readFile(`/proc/${pid}/stat`, 'utf8')) / CLOCK_TICKS_PER_SECOND;
}

/** One floor sample: curl into `file`, then the tool's extra steps; the file is removed after. */
async function floorSample(tool: Exclude<PullTool, 'vmlet'>, url: string, file: string, hex: string, round: number): Promise<PullSample> {
  const c0 = await reapedChildrenCpuSeconds();
  const t0 = process.hrtime.bigint();
  if (tool === 'curl|sha256+fsync') {
    // pipefail: a failed curl fails the sample instead of hashing a short stream.
    const out = await run('bash', ['-o', 'pipefail', '-c', 'curl -sSf "$1" | tee "$2" | openssl dgst -sha256 -r', 'floor', url, file]);
    if (out.split(' ')[0] !== hex) throw new Error(`curl | openssl computed ${out.trim()}, expected ${hex}`);
  } else {
    await run('curl', ['-sSf', '-o', file, url]);
  }
  if (tool === 'curl+sha256+fsync') {
    const out = await run('openssl', ['dgst', '-sha256', '-r', file]);
    if (out.split(' ')[0] !== hex) throw new Error(`openssl computed ${out.trim()}, expected ${hex}`);
  }
  if (tool !== 'curl') await run('sync', [file]);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpuSeconds = (await reapedChildrenCpuSeconds()) - c0;
  await rm(file, { force: true });
  return { tool, round, seconds, cpuSeconds, load1: loadavg()[0]! };
}

async function vmletSample(daemon: BenchDaemon, images: CriImageClient, name: string, hex: string, round: number): Promise<PullSample> {
  const c0 = await pidCpuSeconds(daemon.pid);
  const mark = daemon.logs.length;
  const t0 = process.hrtime.bigint();
  const reply = await images.call<{ image_ref: string }>('PullImage', { image: { image: name } }, 1_800_000);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpuSeconds = (await pidCpuSeconds(daemon.pid)) - c0;
  const load1 = loadavg()[0]!;
  if (reply.image_ref !== `sha256:${hex}`) throw new Error(`PullImage answered ${reply.image_ref}, expected sha256:${hex}`);
  await images.call('RemoveImage', { image: { image: reply.image_ref } });
  const sample: PullSample = { tool: 'vmlet', round, seconds, cpuSeconds, load1 };
  const span = pullSpanSeconds(daemon.logs.slice(mark));
  if (span !== undefined) sample.serveSeconds = span;
  return sample;
}

export async function runPullBench(argv: readonly string[]): Promise<number> {
  const parsed = benchPrologue(() => parsePullOptions(argv), PULL_USAGE, 'the pull bench starts a vmlet serve');
  if (typeof parsed === 'number') return parsed;
  const opts = parsed;
  const bench = new BenchRun('[pull]', { first: 'stopping after the current sample, then cleaning up', again: 'still cleaning up' });
  const step = bench.step;
  // 0711: the daemon's dirs below must be traversable as in the other benches.
  const work = await mkdtemp(join(tmpdir(), 'vmlet-bench-pull-'));
  await chmod(work, 0o711);
  let server: ChildProcess | undefined;
  let daemon: BenchDaemon | undefined;
  let images: CriImageClient | undefined;
  try {
    await mkdir(join(work, 'src'));
    const source = join(work, 'src', 'disk.img');
    step(`writing a ${opts.sizeMib} MiB raw disk`);
    const hex = await writeDisk(source, opts.sizeMib);
    const bytes = opts.sizeMib * MIB;
    const srv = await startServer(source);
    server = srv.child;
    const url = `http://127.0.0.1:${srv.port}/disk.img`;
    // Untimed: the source file is in the page cache for every sample.
    await run('curl', ['-sSf', '-o', '/dev/null', url]);

    const { entry, runtime } = await buildDaemon(opts.runtime, join(work, 'build'), step);
    const cniConf = join(work, 'cni');
    await mkdir(cniConf);
    const dirs = daemonDirs(join(work, 'vmlet'), cniConf, await cniBinDirs());
    await mkdir(dirs.translationsDir, { recursive: true });
    daemon = await BenchDaemon.start(entry, dirs, 'info', ['--vm-warm-pool', '0']);
    images = new CriImageClient(dirs.socket);
    // The floor's files go next to vmlet's image dir: the same filesystem.
    const floorFile = join(dirname(dirs.imageDir), 'floor.img');
    const imageName = `${url}@sha256:${hex}`;

    const result: PullBenchResult = {
      benchmark: 'pull',
      sizeMib: opts.sizeMib,
      bytes,
      rounds: opts.rounds,
      server: 'bench/pull/serve_file.py (Python, sendfile(2), its own process)',
      imageName,
      samples: [],
      loadAverage: { start: loadavg(), end: [] },
      cpus: cpus().length,
      runtime: runtime.mode,
    };
    const floors = PULL_TOOLS.filter((t): t is Exclude<PullTool, 'vmlet'> => t !== 'vmlet');
    for (let round = 1; round <= opts.rounds; round++) {
      const order: PullTool[] = round % 2 === 1 ? ['vmlet', ...floors] : [...floors, 'vmlet'];
      for (const tool of order) {
        bench.checkAbort();
        const sample = tool === 'vmlet' ? await vmletSample(daemon, images, imageName, hex, round) : await floorSample(tool, url, floorFile, hex, round);
        result.samples.push(sample);
        step(`round ${round}/${opts.rounds} ${tool}: ${sample.seconds.toFixed(2)} s${sample.serveSeconds !== undefined ? ` (serve's pull span ${sample.serveSeconds.toFixed(2)} s)` : ''}, ${(bytes / 1e6 / sample.seconds).toFixed(0)} MB/s, CPU ${sample.cpuSeconds.toFixed(2)} s, load ${sample.load1.toFixed(2)}`);
      }
    }
    result.loadAverage.end = loadavg();
    await mkdir(dirname(opts.json), { recursive: true });
    await writeFile(opts.json, `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(`${formatPullReport(result)}\nresults: ${opts.json}\n`);
    return 0;
  } catch (err) {
    // A Ctrl-C at a terminal also reaches the curl of the sample in flight, which then fails.
    if (!(err instanceof InterruptedError) && !bench.signal.aborted) throw err;
    step('interrupted; nothing recorded');
    return 130;
  } finally {
    bench.close();
    images?.close();
    if (daemon) {
      const code = await daemon.stop();
      if (code !== 0) step(`vmlet serve (pid ${daemon.pid}) exited with ${code}`);
    }
    if (server && server.exitCode === null) {
      const gone = new Promise((r) => server!.once('exit', r));
      server.kill('SIGTERM');
      await gone;
    }
    await rm(work, { recursive: true, force: true });
  }
}
