import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  compareLatencies,
  percentOfCore,
  procEntryFromStat,
  rssGrowthPerVm,
  rssSlopeKiB,
  scaleRows,
  vmletProcesses,
  vmletTicksBetween,
  type ProcEntry,
  type ScaleLevel,
  type ScaleResult,
} from '../../vm/scale.js';
import { parseVmOptions } from '../../vm/options.js';

/** A /proc/<pid>/stat line with the given fields (the rest zero). */
function stat(pid: number, comm: string, ppid: number, utime: number, stime: number, cutime = 0, cstime = 0): string {
  const fields = ['S', String(ppid), ...Array(9).fill('0'), String(utime), String(stime), String(cutime), String(cstime), ...Array(35).fill('0')];
  return `${pid} (${comm}) ${fields.join(' ')}`;
}

test('procEntryFromStat: pid, ppid, command (spaces and parentheses kept) and all four times', () => {
  assert.deepEqual(procEntryFromStat(stat(42, 'node', 7, 10, 5, 3, 2)), { pid: 42, ppid: 7, comm: 'node', ticks: 20 });
  assert.deepEqual(procEntryFromStat(stat(9, 'a b) c', 1, 1, 1)), { pid: 9, ppid: 1, comm: 'a b) c', ticks: 2 });
});

const p = (pid: number, ppid: number, comm: string, ticks: number): ProcEntry => ({ pid, ppid, comm, ticks });

test('vmletProcesses: serve and its own descendants, not guests (QEMU, virtiofsd) nor what runs below them', () => {
  const table = [
    p(1, 0, 'init', 0),
    p(100, 1, 'node', 50), // serve
    p(101, 100, 'node', 20), // netd
    p(102, 101, 'vmlet-dhcp', 3), // a helper of netd
    p(103, 100, 'qemu-system-x86', 900),
    p(104, 103, 'helper', 5), // below a guest
    p(105, 100, 'virtiofsd', 40),
    p(200, 1, 'node', 70), // someone else
  ];
  assert.deepEqual(vmletProcesses(table, 100).map((e) => e.pid).sort(), [100, 101, 102]);
  assert.deepEqual(vmletProcesses(table, 999), []);
});

test('vmletTicksBetween: a child that ended is counted once (through its parent), a short-lived one whole', () => {
  const start = [p(100, 1, 'node', 50), p(101, 100, 'node', 20), p(102, 101, 'ip', 4)];
  // 102 ended and was reaped by netd (its 6 ticks now in netd's cutime); 103 started and still runs.
  const end = [p(100, 1, 'node', 53), p(101, 100, 'node', 20 + 2 + 6), p(103, 100, 'nft', 1)];
  // serve +3, netd +2 own, 102: 6 - 4 = +2 in the window, 103: +1.
  assert.equal(vmletTicksBetween(start, end, 100), 3 + 2 + 2 + 1);
  assert.equal(vmletTicksBetween(start, start, 100), 0);
});

test('percentOfCore: ticks at 100 Hz over a window as % of one core', () => {
  assert.equal(percentOfCore(60, 60), 1);
  assert.equal(percentOfCore(30, 60), 0.5);
  assert.ok(Number.isNaN(percentOfCore(5, 0)));
});

test('rssGrowthPerVm: (N - 1 pod) / (N - 1) for serve, netd and their sum', () => {
  const g = rssGrowthPerVm({ runningVms: 1, serveRssKiB: 80_000, netdRssKiB: 50_000 }, { runningVms: 50, serveRssKiB: 80_000 + 49 * 300, netdRssKiB: 50_000 + 49 * 100 });
  assert.deepEqual(g, { serveKiB: 300, netdKiB: 100, totalKiB: 400 });
  assert.ok(Number.isNaN(rssGrowthPerVm({ runningVms: 3, serveRssKiB: 1, netdRssKiB: 1 }, { runningVms: 3, serveRssKiB: 2, netdRssKiB: 2 }).totalKiB));
});

test('rssSlopeKiB: least-squares slope of serve + netd over the batches; a one-off jump is spread out', () => {
  const pt = (runningVms: number, serve: number, netd: number) => ({ runningVms, serveRssKiB: serve, netdRssKiB: netd });
  assert.equal(rssSlopeKiB([pt(1, 100, 50), pt(2, 300, 50), pt(3, 500, 50)]), 200);
  assert.equal(rssSlopeKiB([pt(1, 100, 50), pt(3, 100, 250)]), 100);
  assert.ok(Number.isNaN(rssSlopeKiB([pt(1, 100, 50)])));
  assert.ok(Number.isNaN(rssSlopeKiB([pt(2, 100, 50), pt(2, 300, 50)])));
});

const many = (v: number, n = 9) => Array<number>(n).fill(v);

test('compareLatencies: the verdict reads p10 (<= 1.25x, or at most 0.5 ms more); medians are reported beside it; Version gets none', () => {
  // p10 of 10 samples is the smallest; the medians move with the load.
  const spread = (low: number, mid: number) => [low, ...Array<number>(9).fill(mid)];
  const one = { ListPodSandbox: spread(1, 4), ListContainers: spread(1, 4), PodSandboxStatus: spread(0.4, 3), ContainerStatus: spread(2, 4), Version: spread(0.9, 4) };
  const at50 = { ListPodSandbox: spread(1.2, 8), ListContainers: spread(1.5, 3), PodSandboxStatus: spread(0.85, 3), ContainerStatus: spread(3, 4), Version: spread(0.9, 2) };
  const c = Object.fromEntries(compareLatencies(one, at50).map((x) => [x.method, x]));
  assert.deepEqual([c.ListPodSandbox!.one.low, c.ListPodSandbox!.many.low, c.ListPodSandbox!.lowRatio, c.ListPodSandbox!.medianRatio, c.ListPodSandbox!.verdict], [1, 1.2, 1.2, 2, 'MET']);
  assert.deepEqual([c.ListContainers!.lowRatio, c.ListContainers!.verdict], [1.5, 'MET']); // +0.5 ms: the slack
  assert.equal(c.PodSandboxStatus!.verdict, 'MET'); // 2.1x, but +0.45 ms
  assert.deepEqual([c.ContainerStatus!.lowRatio, c.ContainerStatus!.verdict], [1.5, 'MISS']); // +1 ms
  assert.deepEqual([c.Version!.medianRatio, c.Version!.verdict], [0.5, '-']);
});

function level(runningVms: number, cpuPercent: number, serve: number, netd: number, lat: Record<string, number[]>): ScaleLevel {
  return {
    runningVms,
    idle: { seconds: 60, vmletTicks: cpuPercent * 60, vmletPercent: cpuPercent, processes: [], guestCores: 0.5, machineCores: 1, loadavgStart: [1, 1, 1], loadavgEnd: [1, 1, 1] },
    serveRssKiB: serve,
    netdRssKiB: netd,
    serveSamplesKiB: [serve],
    netdSamplesKiB: [netd],
    latenciesMs: lat,
    loadavgAfter: [1, 1, 1],
  };
}

test('scaleRows: one row per goal with MET/MISS, from the 1-pod and the largest level', () => {
  const lat = { ListPodSandbox: many(1), ListContainers: many(1), PodSandboxStatus: many(1), ContainerStatus: many(1), Version: many(1) };
  const r: ScaleResult = { pods: 50, batch: 4, idleSeconds: 60, callsPerMethod: 9, memoryMiB: 96, warmupPods: [], podSamples: [], rssTrack: [{ runningVms: 1, serveRssKiB: 80_000, netdRssKiB: 50_000 }, { runningVms: 50, serveRssKiB: 80_000 + 49 * 500, netdRssKiB: 50_000 }], levels: [level(1, 0.2, 80_000, 50_000, lat), level(50, 1.4, 80_000 + 49 * 600, 50_000, lat)] };
  const rows = scaleRows(r);
  assert.equal(rows.length, 2 + 5);
  assert.match(rows[0]!.goal, /idle CPU at 50 VMs/);
  assert.deepEqual([rows[0]!.measured, rows[0]!.verdict], ['1.40%', 'MISS']);
  assert.deepEqual([rows[1]!.measured, rows[1]!.verdict], ['600.0 KiB/VM (serve 600.0, netd 0.0; slope over the batches 500.0)', 'MISS']);
  assert.deepEqual(rows.slice(2).map((x) => x.verdict), ['MET', 'MET', 'MET', 'MET', '-']);
  assert.deepEqual([rows[2]!.goal, rows[2]!.atOne, rows[2]!.measured], ['ListPodSandbox unchanged (p10 <= 1.25x or +0.5 ms)', '1.00 / 1.00 / 1.00', 'p10 1.00x, median 1.00x']);
  const fine = scaleRows({ ...r, levels: [level(1, 0.2, 80_000, 50_000, lat), level(50, 0.5, 80_000 + 49 * 100, 50_000 + 49 * 100, lat)] });
  assert.deepEqual([fine[0]!.verdict, fine[1]!.verdict], ['MET', 'MET']);
  assert.deepEqual(scaleRows({ ...r, levels: [r.levels[0]!] }), []);
  // With the GC probe's readings the verdict is on RSS after a full collection; the plain growth is shown beside it.
  const gc = (rssKiB: number, heapUsedKiB: number) => ({ rssKiB, heapUsedKiB, externalKiB: 0 });
  const withGc = scaleRows({
    ...r,
    levels: [
      { ...level(1, 0.2, 80_000, 50_000, lat), serveAfterGc: gc(70_000, 20_000), netdAfterGc: gc(45_000, 10_000) },
      { ...level(50, 0.5, 80_000 + 49 * 900, 50_000, lat), serveAfterGc: gc(70_000 + 49 * 200, 20_000 + 49 * 50), netdAfterGc: gc(45_000 + 49 * 20, 10_000) },
    ],
  });
  assert.match(withGc[1]!.goal, /after a full GC/);
  assert.deepEqual([withGc[1]!.measured, withGc[1]!.verdict], ['220.0 KiB/VM (serve 200.0, netd 20.0; JS heap 50.0; without the GC 900.0; slope over the batches 500.0)', 'MET']);
});

test('options: --phases picks phases (scale not by default), --scale-* have defaults and limits', () => {
  const now = new Date('2026-01-02T03:04:05.678Z');
  const d = parseVmOptions([], '/repo', now)!;
  assert.deepEqual(d.phases, ['pods', 'mounts', 'bursts']);
  assert.deepEqual([d.scalePods, d.scaleBatch, d.scaleIdleS, d.scaleCalls, d.scaleMemoryMiB], [50, 4, 60, 200, 96]);
  const o = parseVmOptions(['--phases', 'scale', '--scale-pods', '5', '--scale-batch', '2', '--scale-idle', '20', '--scale-calls', '50'], '/repo', now)!;
  assert.deepEqual([o.phases, o.scalePods, o.scaleBatch, o.scaleIdleS, o.scaleCalls], [['scale'], 5, 2, 20, 50]);
  assert.deepEqual(parseVmOptions(['--phases', 'pods,scale,pods'], '/repo', now)!.phases, ['pods', 'scale']);
  assert.throws(() => parseVmOptions(['--phases', 'pods,nope'], '/repo', now), /--phases .*not nope/);
  assert.throws(() => parseVmOptions(['--phases', ''], '/repo', now), /--phases/);
  assert.throws(() => parseVmOptions(['--scale-pods', '1'], '/repo', now), /--scale-pods/);
  assert.throws(() => parseVmOptions(['--scale-pods', '101'], '/repo', now), /--scale-pods/);
});

test('gc_probe: a process with the preload announces itself, and on SIGUSR2 collects and writes its memory', async () => {
  const { spawn } = await import('node:child_process');
  const { mkdtemp, readFile, rm, access } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { fileURLToPath } = await import('node:url');
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-gc-probe-'));
  const probe = fileURLToPath(new URL('../../vm/gc_probe.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', '--expose-gc', '--import', probe, '-e', 'setTimeout(() => {}, 20000)'], { env: { ...process.env, VMLET_BENCH_GC_DIR: dir }, stdio: 'ignore' });
  try {
    const ready = join(dir, `${child.pid}.ready`);
    for (let i = 0; i < 200 && !(await access(ready).then(() => true, () => false)); i++) await new Promise((r) => setTimeout(r, 50));
    const sent = Date.now();
    child.kill('SIGUSR2');
    let text = '';
    for (let i = 0; i < 100 && text === ''; i++) {
      await new Promise((r) => setTimeout(r, 50));
      text = await readFile(join(dir, `${child.pid}.json`), 'utf8').catch(() => '');
    }
    const r = JSON.parse(text) as { pid: number; at: number; rss: number; heapUsed: number };
    assert.equal(r.pid, child.pid);
    assert.ok(r.at >= sent - 1000 && r.rss > r.heapUsed && r.heapUsed > 0);
    assert.equal(child.exitCode, null, 'SIGUSR2 must not end the process');
  } finally {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});
