/**
 * `npm run conformance`: the standard CRI conformance suite (critest v1.26.1) against a fresh
 * `vmlet serve`, as a new user would run it: a bridge CNI network, the image names critest pulls
 * translated to VM disk images on a loopback HTTP server, every spec run (nothing skipped by us).
 * Prints one line per spec and closes with `N passed, M failed` over the applicable set
 * (test/conformance/applicable.txt); exits 1 when an applicable spec failed or did not run.
 * Everything it makes (daemon, pods, netns, bridge, domains, temp dirs) is removed, also on failure.
 *
 * Each spec runs in a critest process of its own (focused on its exact name), --parallel at a time:
 * a VM never exits by itself, so a dozen specs wait out critest's 60 s for a container to exit, and
 * one critest process would take about 14 minutes. critest's dry run gives the list of specs.
 *
 * Options: --parallel N (default 4), --warm-pool N (default 0), --vm-memory SIZE (default 192Mi),
 * --only REGEXP (debugging only: the specs left out count as not run), --keep-logs DIR (critest's
 * output, the results and the daemon log are written there). critest and crictl come from ../shared/cri-tools beside
 * the clone (searched upwards from the clone's parent) or from $VMLET_CRI_TOOLS.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { startTestDaemon, REPO_ROOT, type TestDaemon } from '../helpers/daemon.js';
import { findCriTools } from '../helpers/cri_tools.js';
import { ensureLibvirtd } from '../helpers/libvirtd.js';
import { removeAllAndStop } from '../helpers/e2e.js';
import { translationConfig, TINY_IMAGE_GROUPS } from './images.js';
import { focusFor, parseApplicable, specLine, specsFromReport, suiteFailures, verdict, type SpecResult } from './verdict.js';

const execFileAsync = promisify(execFile);

/** The pod network of the conformance run (the project's test range 198.18.0.0/15). */
const SUBNET = '198.18.120';
/** critest has no overall limit of its own short of 1 h; a hung spec must not hold CI that long. */
/**
 * Each critest process runs one spec. The slowest applicable spec waits out critest's own 60 s for a
 * container to exit; a spec blocked in a stream that never ends (attach to a console) must not hold
 * the run: ginkgo ends the suite at this timeout, and KILL_AFTER_MS later the process is killed.
 */
const CRITEST_TIMEOUT = '4m';
const KILL_AFTER_MS = 5 * 60_000;

const log = (line: string) => process.stdout.write(`${line}\n`);

/** Runs the undo steps in reverse order, each even if an earlier one failed. */
class Cleanup {
  private readonly steps: { what: string; run: () => Promise<void> | void }[] = [];
  private running: Promise<string[]> | undefined;

  add(what: string, run: () => Promise<void> | void): void {
    this.steps.push({ what, run });
  }

  /** Returns what could not be undone. */
  runAll(): Promise<string[]> {
    this.running ??= (async () => {
      const problems: string[] = [];
      for (const step of this.steps.reverse()) {
        try {
          await step.run();
        } catch (err) {
          problems.push(`${step.what}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      return problems;
    })();
    return this.running;
  }
}

async function serveFiles(files: Map<string, string>): Promise<{ server: Server; base: string }> {
  const server = createServer((req, res) => {
    const path = files.get(req.url ?? '');
    if (!path) {
      res.writeHead(404).end();
      return;
    }
    const body = readFileSync(path);
    res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** Domains of this run's daemon still defined after it stopped: their XML names our temp dir. */
async function sweepDomains(dir: string): Promise<string[]> {
  const virsh = (...args: string[]) => execFileAsync('virsh', ['-q', '-c', 'qemu:///system', ...args], { encoding: 'utf8', timeout: 60_000 });
  const names = (await virsh('list', '--all', '--name')).stdout.split('\n').map((l) => l.trim()).filter((n) => n.startsWith('vmlet-'));
  const leaked: string[] = [];
  for (const name of names) {
    const xml = await virsh('dumpxml', name).then((r) => r.stdout, () => '');
    if (!xml.includes(dir)) continue;
    leaked.push(`domain ${name}`);
    await virsh('destroy', name).catch(() => {});
    await virsh('undefine', name).catch(() => {});
    for (const ns of new Set(xml.match(/\/run\/netns\/vmlet-[0-9a-z-]+/g) ?? [])) {
      await execFileAsync('ip', ['netns', 'del', ns.slice('/run/netns/'.length)]).then(() => leaked.push(`netns ${ns}`), () => {});
    }
  }
  return leaked;
}

/** Pod netns named in netd's records of this run's state dir that still exist. */
async function sweepNetns(stateDir: string): Promise<string[]> {
  const recordDir = join(stateDir, 'netd');
  if (!existsSync(recordDir)) return [];
  const leaked: string[] = [];
  for (const file of readdirSync(recordDir).filter((f) => f.endsWith('.json'))) {
    let netnsName: unknown;
    try {
      netnsName = (JSON.parse(readFileSync(join(recordDir, file), 'utf8')) as { netnsName?: unknown }).netnsName;
    } catch {
      continue;
    }
    if (typeof netnsName !== 'string' || !/^vmlet-[0-9a-z-]+$/.test(netnsName) || !existsSync(`/run/netns/${netnsName}`)) continue;
    await execFileAsync('ip', ['netns', 'del', netnsName]).then(() => leaked.push(`netns ${netnsName}`), () => {});
  }
  return leaked;
}

/** critest processes running now, ended on SIGINT/SIGTERM before the cleanup. */
const running = new Set<ChildProcess>();
/** Set on SIGINT/SIGTERM: no further spec starts. */
let interrupted = false;

/** Runs critest to its end; resolves with its exit code and its whole output. */
function runCritest(critest: string, args: string[]): Promise<{ exit: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(critest, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    // ChildProcess.kill signals exactly this child's pid.
    const killer = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
    child.once('exit', () => {
      clearTimeout(killer);
      running.delete(child);
    });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.on('data', (c: Buffer) => chunks.push(c));
    child.once('error', reject);
    child.once('exit', (exit) => resolve({ exit, output: Buffer.concat(chunks).toString() }));
  });
}

const COMMON_ARGS = ['--ginkgo.no-color', '--ginkgo.timeout', CRITEST_TIMEOUT];

/** Every spec critest has, by full name, from a dry run (which talks to no runtime). */
async function listSpecs(critest: string, dir: string): Promise<string[]> {
  const report = join(dir, 'dry-run.json');
  const { exit, output } = await runCritest(critest, ['--runtime-endpoint', `unix://${join(dir, 'none.sock')}`, '--ginkgo.dry-run', '--ginkgo.json-report', report, ...COMMON_ARGS]);
  if (!existsSync(report)) throw new Error(`critest --ginkgo.dry-run exited with ${exit} and wrote no report:\n${output}`);
  return specsFromReport(readFileSync(report, 'utf8')).map((s) => s.name);
}

/** One spec in a critest process of its own (focused on exactly its name). */
async function runSpec(critest: string, endpoint: string, name: string, reportPath: string): Promise<{ result: SpecResult; output: string }> {
  const started = Date.now();
  const { exit, output } = await runCritest(critest, [
    '--runtime-endpoint', endpoint, '--image-endpoint', endpoint, '--ginkgo.focus', focusFor(name), '--ginkgo.json-report', reportPath, ...COMMON_ARGS,
  ]);
  const seconds = (Date.now() - started) / 1000;
  const lastLine = output.trim().split('\n').pop() ?? '';
  if (!existsSync(reportPath)) return { result: { name, state: 'failed', seconds, message: `critest exited with ${exit} and wrote no report: ${lastLine}` }, output };
  const json = readFileSync(reportPath, 'utf8');
  const ran = specsFromReport(json).filter((s) => s.name === name);
  if (ran.length !== 1) return { result: { name, state: 'failed', seconds, message: `the focus selected ${ran.length} specs of that name` }, output };
  const result = ran[0]!;
  const suite = suiteFailures(json);
  if (result.state !== 'passed' && suite.length > 0) result.message = `${result.message} (${suite.join('; ')})`.trim();
  return { result, output };
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'warm-pool': { type: 'string', default: '0' },
      parallel: { type: 'string', default: '4' },
      only: { type: 'string' },
      'vm-memory': { type: 'string', default: '192Mi' },
      'keep-logs': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    log('usage: npm run conformance -- [--parallel N] [--only REGEXP] [--warm-pool N] [--vm-memory SIZE] [--keep-logs DIR]');
    return 0;
  }
  const parallel = Number(values.parallel);
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > 16) throw new Error(`--parallel ${values.parallel}: expected 1..16`);
  if (process.getuid?.() !== 0) throw new Error('the conformance run needs root (libvirt, netns, CNI)');
  const tools = findCriTools(REPO_ROOT);
  const applicable = parseApplicable(readFileSync(join(REPO_ROOT, 'test', 'conformance', 'applicable.txt'), 'utf8'));
  const started = Date.now();
  const tag = randomBytes(3).toString('hex');
  const bridge = `vcf${tag}`;
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-conformance-'));
  // mkdtemp makes it 0700; QEMU's user (--qemu-user) must traverse it to reach the VM files below.
  chmodSync(dir, 0o711);
  const cleanup = new Cleanup();
  cleanup.add('temp dir', () => rmSync(dir, { recursive: true, force: true }));
  let daemon: TestDaemon | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    log(`\n${signal}: cleaning up`);
    interrupted = true;
    for (const child of running) child.kill('SIGTERM');
    void cleanup.runAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await ensureLibvirtd();
    // The busybox test guest (built once, cached outside the clone) for every container critest
    // starts, and its nginx variant for the web server image.
    const buildGuest = async (...args: string[]) => (await execFileAsync(join(REPO_ROOT, 'test-guests', 'build-busybox.sh'), args, { encoding: 'utf8', timeout: 900_000 })).stdout.trim();
    const guest = await buildGuest();
    const nginxGuest = await buildGuest('--nginx');
    // Tiny qcow2 disks for the image-manager specs; each a different size, so each a different id.
    const files = new Map<string, string>([['/guest.qcow2', guest], ['/guest-nginx.qcow2', nginxGuest]]);
    for (let i = 0; i < TINY_IMAGE_GROUPS.length; i++) {
      const path = join(dir, `tiny-${i}.qcow2`);
      await execFileAsync('qemu-img', ['create', '-q', '-f', 'qcow2', path, `${i + 1}M`]);
      files.set(`/tiny-${i}.qcow2`, path);
    }
    const { server, base } = await serveFiles(files);
    cleanup.add('image server', () => new Promise<void>((resolve) => server.close(() => resolve())));

    cleanup.add('bridge', () => execFileAsync('ip', ['link', 'del', bridge]).then(() => {}, () => {}));
    daemon = await startTestDaemon({
      dir: join(dir, 'daemon'),
      args: ['--kvm', 'off', '--vm-memory', values['vm-memory']!, '--vm-warm-pool', values['warm-pool']!, '--log-level', 'info'],
    });
    const d = daemon;
    cleanup.add('daemon', async () => {
      await removeAllAndStop(d);
      const leaked = [...(await sweepDomains(d.dir)), ...(await sweepNetns(d.stateDir))];
      if (leaked.length > 0) throw new Error(`left behind and removed now: ${leaked.join(', ')}`);
    });
    writeFileSync(join(d.cniConfDir, '10-conformance.conflist'), JSON.stringify({
      cniVersion: '1.0.0',
      name: `vmlet-conformance-${tag}`,
      plugins: [{
        type: 'bridge', bridge, isGateway: true, ipMasq: false,
        ipam: { type: 'host-local', dataDir: join(dir, 'ipam'), ranges: [[{ subnet: `${SUBNET}.0/24`, gateway: `${SUBNET}.1` }]] },
      }],
    }));
    mkdirSync(d.translationsDir, { recursive: true });
    writeFileSync(join(d.translationsDir, 'critest.yaml'), translationConfig(`${base}/guest.qcow2`, `${base}/guest-nginx.qcow2`, (i) => `${base}/tiny-${i}.qcow2`));

    const endpoint = `unix://${d.socket}`;
    const critest = join(tools, 'critest');
    const only = values.only === undefined ? undefined : new RegExp(values.only);
    const names = (await listSpecs(critest, dir)).filter((n) => !only || only.test(n));
    log(`critest (${critest}): ${names.length} specs, ${parallel} at a time, each in its own critest process, against vmlet (pods on ${SUBNET}.0/24, warm pool ${values['warm-pool']}, VM memory ${values['vm-memory']})`);
    const critestStarted = Date.now();
    mkdirSync(join(dir, 'reports'));
    const results: SpecResult[] = new Array(names.length);
    const outputs: string[] = new Array(names.length);
    let next = 0;
    let done = 0;
    const worker = async () => {
      while (next < names.length && !interrupted) {
        const i = next++;
        const { result, output } = await runSpec(critest, endpoint, names[i]!, join(dir, 'reports', `${i}.json`));
        results[i] = result;
        outputs[i] = output;
        log(`[${String(++done).padStart(2)}/${names.length}]${specLine(result)}`);
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
    const critestSeconds = (Date.now() - critestStarted) / 1000;
    if (values['keep-logs']) {
      const keep = values['keep-logs'];
      mkdirSync(keep, { recursive: true });
      writeFileSync(join(keep, 'critest-output.txt'), names.map((n, i) => `===== ${n}\n${outputs[i]}`).join('\n'));
      writeFileSync(join(keep, 'results.json'), JSON.stringify(results, null, 1));
      writeFileSync(join(keep, 'vmlet-serve.log'), d.output());
    }
    const result = verdict(results, applicable);
    for (const line of result.lines) log(line);
    // Some pass only because the command they check never runs (docs/conformance.md lists them).
    if (result.newlyPassing.length > 0) log(`passing outside the applicable set (${result.newlyPassing.length}; see docs/conformance.md before moving one in)`);
    log(`critest specs ran ${critestSeconds.toFixed(0)} s; whole run ${((Date.now() - started) / 1000).toFixed(0)} s before cleanup`);
    let failed = result.failed > 0;
    const problems = await cleanup.runAll();
    for (const p of problems) log(`cleanup: ${p}`);
    if (problems.length > 0) failed = true;
    log(result.summary);
    return failed ? 1 : 0;
  } catch (err) {
    log(`conformance: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    if (daemon) log(`vmlet serve output (last lines):\n${daemon.output().split('\n').slice(-30).join('\n')}`);
    for (const p of await cleanup.runAll()) log(`cleanup: ${p}`);
    log(`0 passed, ${applicable.length} failed`);
    return 1;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`conformance: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
