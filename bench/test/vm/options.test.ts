import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseVmOptions, UsageError } from '../../vm/options.js';

const NOW = new Date('2026-01-02T03:04:05.678Z');

test('defaults: 4 pods one after the other, results named by time', () => {
  const o = parseVmOptions([], '/repo', NOW)!;
  assert.equal(o.pods, 4);
  assert.equal(o.concurrency, 1);
  assert.equal(o.keepGoing, false);
  assert.equal(o.runtime, 'dist');
  assert.equal(o.vmMemoryMiB, 256);
  assert.equal(o.profile, 'auto');
  assert.equal(o.mountRounds, 3);
  assert.equal(o.json, '/repo/bench/results/vm-2026-01-02T03-04-05-678Z.json');
});

test('options are read and concurrency is capped at the pod count', () => {
  const o = parseVmOptions(['--pods', '3', '--concurrency', '8', '--json', 'x.json', '--keep-going', '--runtime', 'tsx', '--profile', 'never'], '/repo', NOW)!;
  assert.deepEqual([o.pods, o.concurrency, o.json, o.keepGoing, o.runtime, o.profile], [3, 3, 'x.json', true, 'tsx', 'never']);
});

test('--help gives undefined; bad values are usage errors naming the option', () => {
  assert.equal(parseVmOptions(['--help'], '/repo', NOW), undefined);
  assert.throws(() => parseVmOptions(['--pods', '0'], '/repo', NOW), (e: unknown) => e instanceof UsageError && /--pods/.test(e.message));
  assert.throws(() => parseVmOptions(['--pods', '2x'], '/repo', NOW), /--pods must be a whole number/);
  assert.throws(() => parseVmOptions(['--profile', 'sometimes'], '/repo', NOW), /--profile must be one of/);
  assert.throws(() => parseVmOptions(['--nope'], '/repo', NOW), UsageError);
  assert.throws(() => parseVmOptions(['--mount-rounds', '-1'], '/repo', NOW), /--mount-rounds/);
  assert.equal(parseVmOptions(['--mount-rounds', '0'], '/repo', NOW)!.mountRounds, 0);
  assert.throws(() => parseVmOptions(['extra'], '/repo', NOW), UsageError);
});

test('--bursts: 10 pods per burst unless set (0 skips the phase); --subnet-prefix: a /24 of 198.18.0.0/15, unset by default', () => {
  const d = parseVmOptions([], '/repo', NOW)!;
  assert.equal(d.bursts, 10);
  assert.equal(d.subnetPrefix, undefined);
  const o = parseVmOptions(['--bursts', '0', '--subnet-prefix', '198.19.64'], '/repo', NOW)!;
  assert.deepEqual([o.bursts, o.subnetPrefix], [0, '198.19.64']);
  assert.throws(() => parseVmOptions(['--bursts', '33'], '/repo', NOW), /--bursts/);
  assert.throws(() => parseVmOptions(['--subnet-prefix', '10.1.2'], '/repo', NOW), /--subnet-prefix/);
});
