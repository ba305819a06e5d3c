import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatReport, runRatio, runVerdict, RUN_TARGET_RATIO } from '../../sandbox/report.js';
import { RESULT_FORMAT, type PhaseResult, type SandboxBenchResult } from '../../sandbox/result.js';
import { formatTable, ms } from '../../lib/table.js';
import { vmStopLines } from '../../sandbox/vm_stop.js';
import { warmStopLines } from '../../sandbox/warm_stop.js';

function phase(name: PhaseResult['name'], run: number[], floor: number[]): PhaseResult {
  return {
    name,
    concurrency: name === 'sequential' ? 1 : 10,
    n: run.length,
    floor: {
      setupMs: floor,
      netnsAddMs: floor.map((f) => f / 4),
      pluginAddMs: floor.map((f) => [f * 0.75]),
      teardownMs: floor,
      pluginDelMs: floor.map((f) => [f / 2]),
      netnsDeleteMs: floor.map((f) => f / 2),
    },
    vmlet: { run, stop: run.map((r) => r / 2), remove: run.map(() => 3), sandboxIds: run.map((_, i) => String(i)) },
    wallMs: {},
    otherCpuCores: { floor: 0.1, vmlet: 0.2 },
  };
}

function result(phases: PhaseResult[]): SandboxBenchResult {
  return {
    format: RESULT_FORMAT,
    startedAt: '2025-01-01T00:00:00Z',
    finishedAt: '2025-01-01T00:01:00Z',
    options: { n: 3, concurrency: 10, json: 'x', runtime: 'dist', listRecords: 500, listCalls: 200, profile: 'auto', profileIterations: 10, warmStop: 0, vmStop: 3, phases: ['sandbox', 'warm-stop', 'list'], logLevel: 'debug' },
    machine: {
      date: '2025-01-01T00:00:00Z', hostname: 'h', nproc: 2, cpuModel: 'cpu', memTotalMiB: 1024, kernel: 'Linux 6.1 #1',
      node: 'v20', platform: 'linux/x64', tmpFsType: 'ext2/ext3', cniPluginsVersion: '1.1.1', iproute2Version: 'ip 6.1',
    },
    loadavg: { start: [0.5, 0.4, 0.3], end: [1, 1, 1] },
    runtime: { mode: 'dist' },
    network: { conflist: {}, bridge: 'vbenchabc', subnet: '198.19.1.0/24', cniBinDirs: ['/usr/lib/cni'] },
    warmup: { floorSetupMs: 1, floorTeardownMs: 1, runMs: 1, stopMs: 1, removeMs: 1 },
    phases,
    memory: [{ at: 'after start', serve: { pid: 1, rssKiB: 70 * 1024, hwmKiB: 71 * 1024 } }],
    cleanup: { leftoverNetns: [], bridgeLeft: false, errors: [] },
  };
}

test('Run ratio and verdict against the 1.3x target', () => {
  const p = phase('sequential', [60, 65, 70], [50, 50, 50]);
  assert.equal(runRatio(p), 65 / 50);
  assert.equal(runVerdict(RUN_TARGET_RATIO), 'PASS');
  assert.equal(runVerdict(1.31), 'MISS');
});

test('the report states medians, floors, ratios and verdicts', () => {
  const text = formatReport(result([phase('sequential', [60, 65, 70], [50, 50, 50]), phase('concurrent', [200, 300, 400], [100, 100, 100])]));
  assert.match(text, /sequential\s+RunPodSandbox\s+3\s+65\.0\s+70\.0\s+50\.0\s+50\.0\s+1\.30x\s+<=1\.3x PASS/);
  assert.match(text, /10 at a time\s+RunPodSandbox\s+3\s+300\s+400\s+100\s+100\s+3\.00x\s+<=1\.3x MISS/);
  assert.match(text, /RemovePodSandbox\s+3\s+3\.00\s+3\.00\s+-/);
  assert.match(text, /after start\s+70\.0\s+-\s+71\.0/);
  assert.match(text, /cleanup: all sandboxes removed/);
  const broken = result([]);
  broken.cleanup = { leftoverNetns: ['vmlet-x'], bridgeLeft: true, errors: ['e'] };
  broken.error = 'boom';
  const text2 = formatReport(broken);
  assert.match(text2, /cleanup PROBLEMS: leftover netns \["vmlet-x"\], bridge left: true, errors: e/);
  assert.match(text2, /bench failed: boom/);
});

test('tables align and ms formatting scales', () => {
  assert.equal(formatTable(['a', 'bb'], [['xyz', '1']], ['left', 'right']), 'a    bb\n---  --\nxyz   1');
  assert.deepEqual([ms(0.4242), ms(42.42), ms(424.2), ms(Number.NaN)], ['0.42', '42.4', '424', '-']);
});

test('the warm-stop phase: its median against the floor, how many VMs went back, or why it was skipped', () => {
  const lines = warmStopLines({ n: 3, stopMs: [150, 100, 200], removeMs: [20, 30, 40], returned: 3, floorStopMs: [80, 70, 90], floorStopMedianMs: 80, netdStepsMs: { vmSide: [10, 12, 14], cniDel: [40, 50, 60] }, warmWaitMs: [0, 0, 0], refillWaitMs: [0, 0, 0] });
  assert.match(lines.join('\n'), /N=3/);
  assert.match(lines[1]!, /median 150\.0 ms, p95 200\.0 ms = 1\.88x the floor \(CNI DEL \+ ip netns delete, one round before each Stop, median 80\.0 ms\); RemovePodSandbox median 30\.0 ms; VM given back to the pool 3\/3/);
  assert.equal(lines[2], "  netd's teardown steps (median ms): vmSide 12.0, cniDel 50.0");
  const skipped = formatReport({ ...result([]), warmStop: { skipped: 'no libvirtd socket at /x' } });
  assert.match(skipped, /warm-stop phase skipped: no libvirtd socket at \/x/);
});

test('the vm-stop phase: each case against its floor, round by round, or why it was skipped', () => {
  const lines = vmStopLines({ case: 'cold', n: 2, stopMs: [120, 100], removeMs: [30, 50], floorStopMs: [60, 100], floorStopMedianMs: 80, netdStepsMs: { cniDel: [40, 60] }, bootMs: [9000, 11000], warmVms: 0 });
  assert.match(lines[0]!, /^StopPodSandbox with the VM running, a cold VM \(daemon with --vm-warm-pool 0\), N=2 \(0 warm\), .*median 10000\.0 ms after StartContainer/);
  assert.match(lines[1]!, /median 110\.0 ms, p95 120\.0 ms = 1\.38x the floor .* median 80\.0 ms\); RemovePodSandbox median 40\.0 ms/);
  assert.equal(lines[2], '  per round (Stop / floor ms): 120.0/60.0, 100.0/100.0');
  assert.equal(lines[3], "  netd's teardown steps (median ms): cniDel 50.0");
  assert.match(formatReport({ ...result([]), vmStop: { skipped: 'no libvirtd socket at /x' } }), /vm-stop phase skipped: no libvirtd socket at \/x/);
});
