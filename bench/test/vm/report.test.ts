import { test } from 'node:test';
import assert from 'node:assert/strict';
import { burstsSection, formatReport, memoryGrowth, mountsSection, shareVerdict, VMLET_SHARE_TARGET_MS } from '../../vm/report.js';
import type { MountsSample } from '../../vm/mounts.js';
import { RESULT_FORMAT, type PodSample, type VmBenchResult } from '../../vm/result.js';

function pod(name: string, run: number, create: number, start: number, boot: number, warmup = false): PodSample {
  const runSentAt = 1_000_000;
  const startReturnedAt = runSentAt + run + create + start;
  return {
    name, warmup, runMs: run, createMs: create, startMs: start, vmletMs: run + create + start,
    runSentAt, startReturnedAt, ack: { atMs: startReturnedAt + boot }, bootMs: boot, totalMs: run + create + start + boot,
    podIp: '198.19.1.2', ackCounterSeenAt: startReturnedAt + boot + 100,
    console: { bootAtMs: startReturnedAt + boot - 1000, ipAtMs: startReturnedAt + boot + 50, ip: '198.19.1.2/24', readyAtMs: startReturnedAt + boot + 300, failures: [] },
    otherCpuCores: 0.1, guestCpuCores: 0.9,
  };
}

function mem(at: string, runningVms: number, serveKiB: number, netdKiB: number) {
  return { at, runningVms, serve: { pid: 1, rssKiB: serveKiB, hwmKiB: serveKiB }, netd: { pid: 2, rssKiB: netdKiB, hwmKiB: netdKiB }, serveSamplesKiB: [serveKiB], netdSamplesKiB: [netdKiB] };
}

function result(pods: PodSample[]): VmBenchResult {
  return {
    format: RESULT_FORMAT, startedAt: '', finishedAt: '',
    options: { pods: pods.length, concurrency: 1, json: 'x', keepGoing: false, runtime: 'dist', vmMemoryMiB: 256, warmPool: 1, bootTimeoutS: 240, profile: 'auto', profilePods: 5, teardown: 'kubelet', blockVolume: false, mountRounds: 0, bursts: 0, phases: ['pods'], scalePods: 50, scaleBatch: 4, scaleIdleS: 60, scaleCalls: 200, scaleMemoryMiB: 96 },
    machine: {
      date: '', hostname: 'h', nproc: 2, cpuModel: 'cpu', memTotalMiB: 1, kernel: 'Linux 6.1 #1', node: 'v20', platform: 'linux/x64', tmpFsType: 'ext2/ext3',
      cniPluginsVersion: '1', iproute2Version: '1', kvm: 'TCG (--kvm off)', libvirtd: 'libvirtd 9', qemu: 'QEMU 7.2', loadavgStart: [0, 0, 0], loadavgEnd: [0, 0, 0],
    },
    runtime: { mode: 'dist' },
    network: { bridge: 'vbvmabc', subnet: '198.19.1.0/24', conflist: {} },
    image: { path: '/g.qcow2', bytes: 1, url: 'http://127.0.0.1/g', pullMs: 1 },
    pods,
    memory: [mem('before any pod', 0, 70_000, 50_000), mem('baseline: warm-up pod removed', 0, 90_000, 50_000), mem('1 VM(s) running', 1, 90_200, 50_100), mem('2 VM(s) running', 2, 90_400, 50_200), mem('after all removed', 0, 90_050, 50_000)],
    teardown: [],
    foreignDomainsAtStart: [],
    cleanup: { leftoverDomains: [], leftoverNetns: [], leftoverQemuPids: [], bridgeLeft: false, errors: [] },
  };
}

test('shareVerdict: every measured pod must stay under the target', () => {
  assert.equal(shareVerdict([pod('a', 40, 50, 50, 1), pod('b', 40, 50, 59, 1)]), 'PASS');
  assert.equal(shareVerdict([pod('a', 40, 50, 50, 1), pod('b', 40, 50, VMLET_SHARE_TARGET_MS, 1)]), 'MISS');
  assert.equal(shareVerdict([]), '-');
});

test('the report leaves the warm-up out of the stats, states the verdict and the memory growth', () => {
  const text = formatReport(result([pod('w', 900, 900, 900, 9000, true), pod('a', 60, 100, 500, 6000), pod('b', 80, 120, 600, 7000)]));
  const share = text.split('\n').find((l) => l.startsWith("vmlet's share"))!;
  assert.match(share, /^vmlet's share \(Run \+ Create \+ Start\)\s+2\s+730\s+800\s+800\s+target < 150 ms per pod: MISS$/);
  assert.match(text, /guest boot \(Start answered -> DHCP ACK\)\s+2\s+6500\s+7000\s+7000/);
  assert.match(text, /warm-up pod \(not in the stats\): Run 900/);
  assert.match(text, /serve\s+200\s+200\s+50\s+<= 512 KiB\/VM: PASS/);
  assert.match(text, /cleanup: nothing left/);
});

test('memoryGrowth needs a baseline and readings with VMs up', () => {
  const r = result([]);
  assert.equal(memoryGrowth(r.memory)!.netd.slopeKiB, 100);
  assert.equal(memoryGrowth(r.memory.filter((m) => !m.at.startsWith('baseline'))), undefined);
});

test('a failed pod and leftovers are reported, not hidden', () => {
  const r = result([pod('a', 60, 100, 500, 6000), { name: 'b', warmup: false, error: 'no DHCP ACK' }]);
  r.cleanup.leftoverDomains = ['vmlet-x-y'];
  const text = formatReport(r);
  assert.match(text, /b: FAILED: no DHCP ACK/);
  assert.match(text, /cleanup LEFT: domain vmlet-x-y/);
});

test('the mounts section: one row per case (warm/cold, with and without mounts, warm with a block volume), virtiofsd RSS, wrong VM kinds named', () => {
  const r = result([]);
  assert.equal(mountsSection(r), undefined);
  const sample = (vm: 'warm' | 'cold', mounts: 0 | 2, round: number, share: number, gotWarm = vm === 'warm', blockVolumes: 0 | 1 = 0): MountsSample => ({
    vm, mounts, blockVolumes, round, name: `p-${vm}-${mounts}-${round}`, gotWarm, runMs: 50, createMs: share - 60, startMs: 10, vmletMs: share,
    virtiofsd: { processes: 4, rssKiB: 4096 + round * 1024, pssKiB: 2048, privateKiB: 512 },
  });
  r.mounts = {
    rounds: 2,
    samples: [
      sample('warm', 0, 0, 120), sample('warm', 2, 0, 150), sample('cold', 0, 0, 400), sample('cold', 2, 0, 430),
      sample('warm', 0, 1, 130), sample('warm', 2, 1, 170, false), sample('cold', 0, 1, 420), { ...sample('cold', 2, 1, 0), vmletMs: undefined, error: 'boom' },
      sample('warm', 0, 0, 140, true, 1), sample('warm', 0, 1, 160, true, 1),
    ],
    skipped: [],
  };
  const text = formatReport(r);
  assert.match(text, /^warm VM, no mounts\s+2\s+50\.0\s+65\.0\s+10\.0\s+125\s+130\s+120\s+130$/m);
  assert.match(text, /^warm VM, 2 mounts\s+1\s+50\.0\s+90\.0\s+10\.0\s+150\s+150\s+150\s+150\s+1 more got the other VM kind \(left out\)$/m);
  assert.match(text, /^cold VM, 2 mounts\s+1\s+50\.0\s+370\s+10\.0\s+430\s+430\s+430\s+430$/m);
  // The block volume pods are a row of their own, not mixed into "warm VM, no mounts".
  assert.match(text, /^warm VM, no mounts, 1 block volume\s+2\s+50\.0\s+90\.0\s+10\.0\s+150\s+160\s+140\s+160$/m);
  assert.match(text, /virtiofsd per VM right after Start .*: 4-4 processes, RSS 4\.0-5\.0 MiB \(median 4\.0\), PSS 2\.0-2\.0 MiB, private \(USS\) 0\.5-0\.5 MiB/);
});

test('the bursts section: a row per pool and mode with warm/cold counts and the verdict on the max share, and the idle warm VM cost', () => {
  const r = result([]);
  assert.equal(burstsSection(r), undefined);
  r.bursts = {
    podsPerBurst: 2,
    warmupShareMs: [480, 455],
    runs: [
      { pool: 'default pool', mode: 'back-to-back', idleAtStart: 1, settleWaitMs: 1, wallMs: 500, pods: [{ name: 'a', vmletMs: 90, gotWarm: true }, { name: 'b', vmletMs: 410, gotWarm: false }] },
      { pool: 'demand pool', mode: 'at once', idleAtStart: 4, settleWaitMs: 1, wallMs: 300, pods: [{ name: 'c', vmletMs: 120, gotWarm: true }, { name: 'd', vmletMs: 130, gotWarm: true }] },
    ],
    idleWarmVm: { domain: 'vmlet-warm-abc', qemuRssKiB: 40960, qemuPssKiB: 30720, qemuPrivateKiB: 20480, virtiofsdProcesses: 4, virtiofsdRssKiB: 8192, virtiofsdPrivateKiB: 2048, netns: 'vmlet-warm-1', links: ['lo', 'br', 'tap'], nftTables: 1, nftChains: 2, nftRules: 3 },
  };
  const text = burstsSection(r)!;
  assert.match(text, /default pool, back-to-back\s+1\s+1\s+1\s+250\s+410\s+410\s+90.0\s+410\s+410\s+500\s+MISS/);
  assert.match(text, /demand pool, at once\s+4\s+2\s+0\s+.*PASS/);
  assert.match(text, /QEMU RSS 40\.0 MiB, PSS 30\.0 MiB, private \(USS\) 20\.0 MiB/);
  assert.match(text, /3 links \(lo, br, tap\), nftables 1 table\(s\), 2 chain\(s\), 3 rule\(s\)/);
  assert.match(text, /warm-up pod per daemon \(not in the rows\): share 480, 455 ms/);
  assert.ok(formatReport(r).includes(text));
});
