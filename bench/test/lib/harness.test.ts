import { test } from 'node:test';
import assert from 'node:assert/strict';
import { errorText, sleep } from '../../lib/harness.js';
import { InterruptedError } from '../../lib/pool.js';
import { defaultJsonPath, parseBenchArgs, UsageError } from '../../lib/options.js';

test('sleep rejects with InterruptedError when the run is aborted, before or during the wait', async () => {
  const before = new AbortController();
  before.abort();
  await assert.rejects(sleep(10, before.signal), InterruptedError);
  const during = new AbortController();
  const waiting = sleep(60_000, during.signal);
  during.abort();
  await assert.rejects(waiting, InterruptedError);
  await sleep(1); // no signal: just waits
});

test('errorText: Ctrl-C, gRPC errors by message, other errors with their stack', () => {
  assert.equal(errorText(new InterruptedError()), 'interrupted (Ctrl-C)');
  const grpc = Object.assign(new Error('5 NOT_FOUND: no such sandbox'), { details: 'no such sandbox' });
  assert.equal(errorText(grpc), '5 NOT_FOUND: no such sandbox');
  assert.match(errorText(new Error('boom')), /^Error: boom\n\s+at /);
  assert.equal(errorText('text'), 'text');
});

test('parseBenchArgs: strings, booleans, --help, and unknown options as usage errors', () => {
  const args = parseBenchArgs(['--n', '3', '--keep-going'], { n: 'string', 'keep-going': 'boolean', json: 'string' })!;
  assert.equal(args.str('n'), '3');
  assert.equal(args.str('json'), undefined);
  assert.equal(args.flag('keep-going'), true);
  assert.equal(parseBenchArgs(['--help'], { n: 'string' }), undefined);
  assert.throws(() => parseBenchArgs(['--nope'], { n: 'string' }), UsageError);
  assert.throws(() => parseBenchArgs(['stray'], { n: 'string' }), UsageError);
});

test('defaultJsonPath: bench/results/<bench>-<time>.json with a file-name-safe time', () => {
  assert.equal(defaultJsonPath('/repo', 'vm', new Date('2025-01-02T03:04:05.678Z')), '/repo/bench/results/vm-2025-01-02T03-04-05-678Z.json');
});
