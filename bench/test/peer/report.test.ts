import { test } from 'node:test';
import assert from 'node:assert/strict';
import { emptySamples, formatPeerReport, peerTable, PEER_RESULT_FORMAT, type PeerResult } from '../../peer/report.js';
import { parsePeerOptions } from '../../peer/run.js';

function result(): PeerResult {
  const containerd = { ...emptySamples(), run: [200, 220, 240], stop: [100, 110, 120], stopWarm: [90, 100, 110], remove: [30, 30, 30], version: [1, 1, 1], list: [2, 2, 2], crictlVersion: [40, 40, 40], crictlPods: [60, 60, 60], crictlInfo: [41, 41, 41], listSetup: [9000] };
  const vmlet = { ...emptySamples(), run: [100, 110, 120], stop: [150, 165, 180], stopWarm: [80, 90, 100], remove: [3, 3, 3], version: [2, 2, 2], list: [4, 4, 4], crictlVersion: [44, 44, 44], crictlPods: [66, 66, 66], crictlInfo: [42, 42, 42], listSetup: [3000] };
  return {
    format: PEER_RESULT_FORMAT, startedAt: '', finishedAt: '',
    options: { n: 3, listPods: 100, crictlCalls: 3, versionCalls: 3, vmWarmPool: 0, warmStop: 3, containerRows: true, runtime: 'dist', json: 'x' },
    loadavg: { start: [1, 2, 3], end: [1, 2, 3] }, versions: { containerd: '1.6.20', crictl: 'v1.26.1' }, network: { conflist: {} },
    containerd, vmlet, floor: { setup: [50, 50, 50], teardown: [60, 60, 60], teardownWarm: [75, 75, 75] }, crictlStart: [30, 30, 30], quietWaits: { unary: { vmlet: 900, containerd: 600 } },
    cleanup: { errors: [], leftoverNetns: [], bridgeLeft: false },
  };
}

test('the peer table: both medians, vmlet/containerd and vmlet/floor per row, crictl over its own start', () => {
  const lines = peerTable(result()).split('\n');
  const row = (label: string) => lines.find((l) => l.startsWith(label))!.split(/\s{2,}/);
  assert.deepEqual(row('RunPodSandbox'), ['RunPodSandbox (N=3)', '220', '240', '110', '120', '0.50x', '50.0', '2.20x']);
  assert.deepEqual(row('StopPodSandbox (N=3)'), ['StopPodSandbox (N=3)', '110', '120', '165', '180', '1.50x', '60.0', '2.75x']);
  assert.deepEqual(row('StopPodSandbox, warm'), ['StopPodSandbox, warm VM never used (N=3)', '100', '110', '90.0', '100', '0.90x', '75.0', '1.20x']);
  assert.deepEqual(row('`crictl pods`'), ['`crictl pods` with 100 pods', '60.0', '60.0', '66.0', '66.0', '1.10x', '-', '-']);
  assert.deepEqual(row('`crictl info`'), ['`crictl info` (Status)', '41.0', '41.0', '42.0', '42.0', '1.02x', '-', '-']);
  // Rows without samples on either side (here ListContainers, crictl ps) are left out.
  assert.equal(lines.filter((l) => l.startsWith('ListContainers') || l.startsWith('`crictl ps')).length, 0);
  assert.match(lines.join('\n'), /before the unary rows, waited for each runtime to go quiet \(≤ 20 ms CPU per 300 ms, twice\): vmlet 900 ms, containerd 600 ms/);
  assert.match(lines.join('\n'), /making the 100 list pods \(10 at a time\): containerd 9000 ms, vmlet 3000 ms/);
  assert.match(lines.join('\n'), /`crictl version` containerd 10\.0 ms, vmlet 14\.0 ms; `crictl pods` containerd 30\.0 ms, vmlet 36\.0 ms/);
});

test('ContainerStatus rows when measured; the reason when skipped', () => {
  const measured = { ...result(), vmlet: { ...result().vmlet, containerStatus: [1.5, 1.5], crictlInspect: [30, 30] }, containerd: { ...result().containerd, containerStatus: [0.5, 0.5], crictlInspect: [25, 25] } };
  const lines = peerTable(measured).split('\n');
  const row = (label: string) => lines.find((l) => l.startsWith(label))!.split(/\s{2,}/);
  assert.deepEqual(row('ContainerStatus'), ['ContainerStatus (grpc-js client)', '0.50', '0.50', '1.50', '1.50', '3.00x', '-', '-']);
  assert.deepEqual(row('`crictl inspect`'), ['`crictl inspect` (ContainerStatus)', '25.0', '25.0', '30.0', '30.0', '1.20x', '-', '-']);
  assert.match(lines.join('\n'), /ContainerStatus rows: one created container on each side/);
  const skipped = peerTable({ ...result(), containerRowsSkipped: 'no libvirtd socket at /x' });
  assert.match(skipped, /ContainerStatus rows not measured: no libvirtd socket at \/x/);
  assert.doesNotMatch(skipped, /^ContainerStatus \(/m);
});

test('no warm-stop rounds: no warm row, and the reason when skipped', () => {
  const r = { ...result(), vmlet: { ...result().vmlet, stopWarm: [] }, warmStopSkipped: 'no libvirtd socket at /x' };
  const report = formatPeerReport(r);
  assert.doesNotMatch(report, /warm VM never used/);
  assert.match(report, /warm-stop rows skipped: no libvirtd socket at \/x/);
});

test('peer options: defaults and bounds', () => {
  const o = parsePeerOptions([], '/repo', new Date('2025-01-02T03:04:05.678Z'))!;
  assert.deepEqual([o.n, o.listPods, o.crictlCalls, o.versionCalls, o.vmWarmPool, o.warmStop, o.containerRows, o.runtime], [20, 100, 20, 100, 0, 5, true, 'dist']);
  assert.equal(parsePeerOptions(['--container-rows', 'no'], '/repo', new Date())!.containerRows, false);
  assert.throws(() => parsePeerOptions(['--container-rows', 'maybe'], '/repo', new Date()), /container-rows/);
  assert.throws(() => parsePeerOptions(['--n', '0'], '/repo', new Date()));
  // 1000 pods on each side cannot get addresses from the bench's /24.
  assert.throws(() => parsePeerOptions(['--list-pods', '121'], '/repo', new Date()), /needs 255 addresses.*253/);
  assert.equal(parsePeerOptions(['--list-pods', '1000', '--subnet', '198.19.80.0/21'], '/repo', new Date())!.listPods, 1000);
  assert.equal(parsePeerOptions(['--list-pods', '1000', '--subnet', '198.19.80.0/21'], '/repo', new Date())!.subnet, '198.19.80.0/21');
  assert.throws(() => parsePeerOptions(['--list-pods', '1000', '--subnet', '198.19.80.0/22'], '/repo', new Date()), /needs 2013 addresses/);
  assert.throws(() => parsePeerOptions(['--list-pods', '1001', '--subnet', '198.19.0.0/16'], '/repo', new Date()), /list-pods/);
  assert.throws(() => parsePeerOptions(['--subnet', '198.19.81.0/21'], '/repo', new Date()), /host bits/);
  assert.throws(() => parsePeerOptions(['--subnet', '10.0.0.0/21'], '/repo', new Date()), /198\.18\.0\.0\/15/);
  assert.throws(() => parsePeerOptions(['--subnet', '198.19.80.0/25'], '/repo', new Date()), /\/16 to \/24/);
  assert.throws(() => parsePeerOptions(['--subnet', '198.19.80.0/21', '--subnet-prefix', '198.19.60'], '/repo', new Date()), /exclude/);
  assert.equal(parsePeerOptions(['--list-pods', '120'], '/repo', new Date())!.listPods, 120);
  assert.throws(() => parsePeerOptions(['--runtime', 'bun'], '/repo', new Date()));
});
