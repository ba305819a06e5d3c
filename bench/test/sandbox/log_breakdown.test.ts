import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runBreakdown, stopBreakdown, removeBreakdown } from '../../sandbox/log_breakdown.js';
import { netnsNameFor } from '../../../src/network/names.js';

const a = 'a'.repeat(64);
const b = 'b'.repeat(64);

const runLines = [
  { msg: 'CNI plugin ran', command: 'ADD', plugin: 'bridge', containerId: a, ms: 30 },
  { msg: 'interface wired', netns: netnsNameFor(a), ms: 15 },
  { msg: 'netd call', method: 'setup', durationMs: 200 },
  { msg: 'rpc', method: 'RunPodSandbox', durationMs: 210 },
  { msg: 'CNI plugin ran', command: 'ADD', plugin: 'bridge', containerId: b, ms: 20 },
  { msg: 'CNI plugin ran', command: 'ADD', plugin: 'tuning', containerId: b, ms: 5 },
  { msg: 'interface wired', netns: netnsNameFor(b), ms: 10 },
  { msg: 'netd call', method: 'setup', durationMs: 100 },
  { msg: 'rpc', method: 'PodSandboxStatus', durationMs: 1 },
  { msg: 'rpc', method: 'RunPodSandbox', durationMs: 104 },
];

test('runBreakdown splits each Run by its own lines', () => {
  const r = runBreakdown(runLines, [a, b], [215, 110])!;
  assert.ok(r);
  const get = (prefix: string) => Object.entries(r).find(([k]) => k.trim().startsWith(prefix))![1];
  assert.deepEqual(get('client round trip'), [215, 110]);
  assert.deepEqual(get('gRPC + client'), [5, 6]);
  assert.deepEqual(get('serve handler'), [210, 104]);
  assert.deepEqual(get('serve own work'), [10, 4]);
  assert.deepEqual(get('netd setup'), [200, 100]);
  assert.deepEqual(get('CNI plugins ADD'), [30, 25]);
  assert.deepEqual(get('rest of netd setup'), [170, 75]);
  // The wiring runs after the reply: shown apart, not taken out of setup.
  assert.deepEqual(get('after the reply'), [15, 10]);
});

test('breakdowns refuse lines that do not match the calls one to one', () => {
  assert.equal(runBreakdown(runLines, [a], [215]), undefined);
  assert.equal(stopBreakdown(runLines, [a, b], [1, 2]), undefined);
  const stop = stopBreakdown(
    [
      { msg: 'CNI plugin ran', command: 'DEL', containerId: a, ms: 40 },
      { msg: 'netd call', method: 'teardown', durationMs: 90 },
      { msg: 'rpc', method: 'StopPodSandbox', durationMs: 95 },
    ],
    [a],
    [99],
  )!;
  assert.deepEqual(Object.values(stop), [[99], [4], [95], [5], [90], [40], [50]]);
  assert.deepEqual(Object.values(removeBreakdown([{ msg: 'rpc', method: 'RemovePodSandbox', durationMs: 2 }], [3])!), [[3], [1], [2]]);
});
