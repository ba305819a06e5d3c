import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  cpuSecondsPerGiB,
  digestFloor,
  formatPullReport,
  mbPerSecond,
  pullSpanSeconds,
  pullVerdict,
  summarizeTool,
  type PullBenchResult,
  type PullSample,
} from '../../pull/report.js';
import { parsePullOptions } from '../../pull/run.js';

const GIB = 2 ** 30;

function sample(tool: PullSample['tool'], round: number, seconds: number, cpuSeconds: number, load1 = 2): PullSample {
  return { tool, round, seconds, cpuSeconds, load1 };
}

function result(samples: PullSample[]): PullBenchResult {
  return {
    benchmark: 'pull',
    sizeMib: 1024,
    bytes: GIB,
    rounds: 3,
    server: 'serve_file.py',
    imageName: 'http://127.0.0.1:1/disk.img@sha256:ab',
    samples,
    loadAverage: { start: [1, 2, 3], end: [4, 5, 6] },
    cpus: 2,
    runtime: 'dist',
  };
}

test('throughput in decimal MB/s and CPU seconds per binary GiB', () => {
  assert.equal(mbPerSecond(GIB, 2), GIB / 1e6 / 2);
  assert.equal(mbPerSecond(1_000_000, 0.5), 2);
  assert.ok(Number.isNaN(mbPerSecond(GIB, 0)));
  assert.equal(cpuSecondsPerGiB(3, GIB / 2), 6);
  assert.ok(Number.isNaN(cpuSecondsPerGiB(1, 0)));
});

test("a tool's summary: median time and median CPU over its own rounds only", () => {
  const samples = [sample('vmlet', 1, 4, 2), sample('vmlet', 2, 10, 3), sample('vmlet', 3, 5, 2.5), sample('curl', 1, 1, 0.7)];
  const s = summarizeTool(samples, 'vmlet', GIB)!;
  assert.equal(s.rounds, 3);
  assert.equal(s.medianSeconds, 5);
  assert.equal(s.mbPerSecond, GIB / 1e6 / 5);
  assert.equal(s.cpuSecondsPerGiB, 2.5);
  assert.equal(summarizeTool(samples, 'curl+fsync', GIB), undefined);
});

test('the verdict: vmlet at >= 90% of the floor is met, below is not', () => {
  const floor = summarizeTool([sample('curl+fsync', 1, 4, 1)], 'curl+fsync', GIB)!;
  const at = (seconds: number) => pullVerdict(summarizeTool([sample('vmlet', 1, seconds, 2)], 'vmlet', GIB)!, floor);
  assert.deepEqual(at(4), { ratio: 1, met: true });
  assert.equal(at(4 / 0.9).met, true);
  assert.equal(at(4 / 0.89).met, false);
  assert.equal(at(2).ratio, 2);
});

test("serve's pull span: from 'pulling image' to the next 'image pulled'", () => {
  const lines = [
    { msg: 'rpc', time: 900 },
    { msg: 'pulling image', time: 1000 },
    { msg: 'image pull failed', time: 1500 },
    { msg: 'image pulled', time: 3250 },
    { msg: 'image pulled', time: 9000 },
  ];
  assert.equal(pullSpanSeconds(lines), 2.25);
  assert.equal(pullSpanSeconds(lines.slice(0, 3)), undefined);
  assert.equal(pullSpanSeconds([{ msg: 'image pulled', time: 1 }]), undefined);
});

test('the report: one row per tool with vmlet / this; verdicts against the faster digest floor and the strict one', () => {
  const text = formatPullReport(
    result([
      sample('vmlet', 1, 4, 2.2, 3),
      sample('curl', 1, 1, 0.8, 3),
      sample('curl+fsync', 1, 3.8, 0.8, 3),
      sample('curl+sha256+fsync', 1, 5, 1.6, 3),
      sample('curl|sha256+fsync', 1, 4.2, 2, 3),
    ]),
  );
  const row = (label: string) => text.split('\n').find((l) => l.startsWith(`${label} `))!.split(/\s{2,}/);
  assert.deepEqual(row('vmlet'), ['vmlet', '1', '4.00', '268', '2.20', '3.00']);
  assert.deepEqual(row('curl'), ['curl', '1', '1.00', '1074', '0.80', '25%', '3.00']);
  assert.deepEqual(row('curl+fsync'), ['curl+fsync', '1', '3.80', '283', '0.80', '95%', '3.00']);
  assert.deepEqual(row('curl+sha256+fsync'), ['curl+sha256+fsync', '1', '5.00', '215', '1.60', '125%', '3.00']);
  assert.deepEqual(row('curl|sha256+fsync'), ['curl|sha256+fsync', '1', '4.20', '256', '2.00', '105%', '3.00']);
  assert.match(text, /vmlet \/ curl\|sha256\+fsync \(the faster floor with the digest computed\): 105% \(target >= 90%\): met/);
  assert.match(text, /vmlet \/ curl\+fsync \(strict: no digest\): 95% \(target >= 90%\): met/);
  assert.match(text, /load average at start 1\.00 2\.00 3\.00, at end 4\.00 5\.00 6\.00/);
  const slow = formatPullReport(result([sample('vmlet', 1, 5, 2), sample('curl+fsync', 1, 4, 1), sample('curl+sha256+fsync', 1, 4.4, 1.6)]));
  assert.match(slow, /vmlet \/ curl\+sha256\+fsync \(the faster floor with the digest computed\): 88% \(target >= 90%\): NOT met/);
  assert.match(slow, /vmlet \/ curl\+fsync \(strict: no digest\): 80% .*NOT met/);
  assert.match(formatPullReport(result([sample('curl', 1, 1, 1)])), /the faster floor with the digest computed: no samples of vmlet or the floor/);
});

test('the digest floor is the faster of the two tools that hash; none without samples', () => {
  const sums = (['curl', 'curl+sha256+fsync', 'curl|sha256+fsync'] as const).map((t, i) => summarizeTool([sample(t, 1, [0.5, 3, 4][i]!, 1)], t, GIB)!);
  assert.equal(digestFloor(sums)!.tool, 'curl+sha256+fsync');
  assert.equal(digestFloor(sums.slice(0, 1)), undefined);
});

test('options: defaults, bounds and --help', () => {
  const o = parsePullOptions([])!;
  assert.equal(o.sizeMib, 1024);
  assert.equal(o.rounds, 3);
  assert.equal(o.runtime, 'dist');
  assert.match(o.json, /bench\/results\/pull-.*\.json$/);
  assert.deepEqual({ ...parsePullOptions(['--size-mib', '64', '--rounds', '1', '--runtime', 'tsx', '--json', '/x.json'])! }, { sizeMib: 64, rounds: 1, runtime: 'tsx', json: '/x.json' });
  assert.equal(parsePullOptions(['--help']), undefined);
  assert.throws(() => parsePullOptions(['--size-mib', '0']), /--size-mib must be between 1 and 16384/);
  assert.throws(() => parsePullOptions(['--rounds', 'x']), /--rounds must be a whole number/);
  assert.throws(() => parsePullOptions(['--runtime', 'bun']), /--runtime must be one of dist, tsx/);
  assert.throws(() => parsePullOptions(['--bogus']), /bogus/);
});
