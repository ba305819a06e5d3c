import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSandboxOptions, UsageError } from '../../sandbox/options.js';

const when = new Date('2025-01-02T03:04:05.678Z');

test('defaults: N=20, 10 at a time, dist, 500 records, 200 calls, JSON under bench/results', () => {
  const o = parseSandboxOptions([], '/repo', when)!;
  assert.deepEqual(o, {
    n: 20,
    concurrency: 10,
    json: '/repo/bench/results/sandbox-2025-01-02T03-04-05-678Z.json',
    runtime: 'dist',
    listRecords: 500,
    listCalls: 200,
    profile: 'auto',
    profileIterations: 10,
    warmStop: 5,
    vmStop: 3,
    phases: ['sandbox', 'warm-stop', 'list'],
    logLevel: 'debug',
  });
});

test('options are parsed and validated', () => {
  const o = parseSandboxOptions(['--n', '5', '--concurrency', '2', '--json', 'x.json', '--runtime', 'tsx', '--profile', 'never'], '/repo', when)!;
  assert.equal(o.n, 5);
  assert.equal(o.concurrency, 2);
  assert.equal(o.json, 'x.json');
  assert.equal(o.runtime, 'tsx');
  assert.equal(o.profile, 'never');
  assert.equal(parseSandboxOptions(['--help'], '/repo', when), undefined);
  assert.deepEqual(parseSandboxOptions(['--phases', 'list,warm-stop'], '/repo', when)!.phases, ['warm-stop', 'list']);
  // vm-stop boots guests: only when named.
  const vm = parseSandboxOptions(['--phases', 'vm-stop,sandbox', '--vm-stop', '2'], '/repo', when)!;
  assert.deepEqual([vm.phases, vm.vmStop], [['sandbox', 'vm-stop'], 2]);
  for (const bad of [['--n', '0'], ['--n', '2.5'], ['--n', '-1'], ['--runtime', 'bun'], ['--bogus'], ['--n'], ['stray'], ['--phases', 'sandbox,bogus'], ['--phases', ','], ['--vm-stop', '0']]) {
    assert.throws(() => parseSandboxOptions(bad, '/repo', when), UsageError, bad.join(' '));
  }
});

test('--subnet-prefix: a /24 prefix of 198.18.0.0/15, unset by default', () => {
  assert.equal(parseSandboxOptions([], '/repo', new Date(0))!.subnetPrefix, undefined);
  assert.equal(parseSandboxOptions(['--subnet-prefix', '198.19.60'], '/repo', new Date(0))!.subnetPrefix, '198.19.60');
  assert.throws(() => parseSandboxOptions(['--subnet-prefix', '10.0.0'], '/repo', new Date(0)), UsageError);
});
