/**
 * `npm test`: the whole suite in three steps, so that CI stays near 30 minutes on two cores.
 *
 * 1. Unit tests, the benchmarks' own tests and the integration tests that need the machine to
 *    themselves (they restart libvirtd or install vmlet as a service), one file at a time.
 * 2. Four lanes side by side, each one file at a time: two share the files that boot the Debian
 *    cloud-init guest (minutes of TCG each, one core busy the whole time), one has the other guest
 *    files (the busybox guest boots in seconds), one the host files (daemons, netns, CNI, images,
 *    faults: mostly waiting on processes). The two Debian lanes keep both cores busy; the other
 *    two fit in between.
 *    Every test counts only what its own daemon made, so the lanes do not see each other's pods.
 *
 * Each lane's output is kept in a file and printed whole when the lane ends (interleaved TAP helps
 * nobody); the last lines are one summary per lane. Exit code 1 when any lane failed.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync, statSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..');

function testFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...testFiles(path));
    else if (name.endsWith('.test.ts')) out.push(relative(ROOT, path));
  }
  return out;
}

/** They restart libvirtd or install the service: nothing else may run beside them. */
const SOLO = new Set([
  'test/integration/vmwrapper/configure_libvirt.test.ts',
  'test/integration/vmwrapper/domain_netns.test.ts',
  'test/integration/libvirt/connection.test.ts',
  'test/integration/service/install.test.ts',
]);
const isGuestFile = (f: string) => f.startsWith('test/integration/e2e/') || f.startsWith('test/integration/test-guests/');
/** A file that boots the Debian guest names its build script. */
const bootsDebian = (f: string) => readFileSync(join(ROOT, f), 'utf8').includes('build-debian-cloud');

interface Lane {
  name: string;
  files: string[];
}

interface LaneResult {
  name: string;
  code: number;
  seconds: number;
  summary: string;
  log: string;
}

function runLane(lane: Lane, logDir: string): Promise<LaneResult> {
  const log = join(logDir, `${lane.name}.log`);
  const out = createWriteStream(log);
  const started = Date.now();
  return new Promise((resolve) => {
    if (lane.files.length === 0) {
      out.end();
      resolve({ name: lane.name, code: 0, seconds: 0, summary: 'no files', log });
      return;
    }
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...lane.files], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pipe(out, { end: false });
    child.stderr.pipe(out, { end: false });
    child.on('close', (code) => {
      out.end(() => {
        const text = readFileSync(log, 'utf8');
        // node --test ends with `# pass N` etc.; the last of each is the lane's total.
        const count = (key: string) => [...text.matchAll(new RegExp(`^# ${key} (\\d+)$`, 'gm'))].map((m) => m[1]).pop();
        const summary = ['tests', 'pass', 'fail', 'cancelled', 'skipped', 'todo'].map((k) => `${k} ${count(k) ?? '?'}`).join(', ');
        resolve({ name: lane.name, code: code ?? 1, seconds: Math.round((Date.now() - started) / 1000), summary, log });
      });
    });
  });
}

/**
 * Seconds each Debian-guest file took in CI on this class of machine (a Debian boot dominates each;
 * two boots in persistent_root_guest). Only used to balance the two Debian lanes; a file not
 * listed counts as one boot.
 */
const DEBIAN_FILE_SECONDS: Record<string, number> = {
  'persistent_root_guest.test.ts': 330,
  'block_devices_guest.test.ts': 245,
  'cloud_init_guest.test.ts': 200,
  'volumes_guest.test.ts': 116,
  'masquerade_guest.test.ts': 110,
  'dual_stack.test.ts': 92,
  'streaming_agent.test.ts': 77,
};
const ONE_BOOT_SECONDS = 150;

/** Longest file first onto the lane with the least so far, so the lanes end close together. */
function splitByWeight(files: readonly string[], lanes: number): string[][] {
  const weight = (f: string) => DEBIAN_FILE_SECONDS[f.slice(f.lastIndexOf('/') + 1)] ?? ONE_BOOT_SECONDS;
  const out = Array.from({ length: lanes }, () => ({ files: [] as string[], seconds: 0 }));
  for (const f of [...files].sort((a, b) => weight(b) - weight(a) || a.localeCompare(b))) {
    const lane = out.reduce((min, l) => (l.seconds < min.seconds ? l : min));
    lane.files.push(f);
    lane.seconds += weight(f);
  }
  return out.map((l) => l.files);
}

async function main(): Promise<number> {
  const unit = [...testFiles(join(ROOT, 'test', 'unit')), ...testFiles(join(ROOT, 'bench')).filter((f) => f.includes('/test/'))];
  const integration = testFiles(join(ROOT, 'test', 'integration'));
  const solo = integration.filter((f) => SOLO.has(f));
  const guests = integration.filter((f) => !SOLO.has(f) && isGuestFile(f));
  const debian = guests.filter(bootsDebian);
  const busybox = guests.filter((f) => !bootsDebian(f));
  const debianLanes = splitByWeight(debian, 2);
  const host = integration.filter((f) => !SOLO.has(f) && !isGuestFile(f));
  const logDir = mkdtempSync(join(tmpdir(), 'vmlet-test-lanes-'));
  const results: LaneResult[] = [];
  const show = (r: LaneResult) => {
    process.stdout.write(`\n===== lane ${r.name} (${r.seconds} s) =====\n${readFileSync(r.log, 'utf8')}`);
    results.push(r);
  };
  show(await runLane({ name: 'unit+solo', files: [...unit, ...solo] }, logDir));
  const parallel = await Promise.all([
    runLane({ name: 'guests-debian-1', files: debianLanes[0] }, logDir),
    runLane({ name: 'guests-debian-2', files: debianLanes[1] }, logDir),
    runLane({ name: 'guests-busybox', files: busybox }, logDir),
    runLane({ name: 'host', files: host }, logDir),
  ]);
  parallel.forEach(show);
  process.stdout.write('\n');
  for (const r of results) process.stdout.write(`lane ${r.name}: ${r.code === 0 ? 'ok' : 'FAILED'} in ${r.seconds} s — ${r.summary}\n`);
  return results.every((r) => r.code === 0) ? 0 : 1;
}

main().then((code) => process.exit(code), (err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
