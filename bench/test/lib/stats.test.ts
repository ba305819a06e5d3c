import { test } from 'node:test';
import assert from 'node:assert/strict';
import { median, percentile, summarize, roundSamples } from '../../lib/stats.js';

test('median of odd and even counts, unsorted input', () => {
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
});

test('percentile is nearest-rank: always a measured value', () => {
  const twenty = Array.from({ length: 20 }, (_, i) => 20 - i); // 20..1
  assert.equal(percentile(twenty, 95), 19);
  assert.equal(percentile(twenty, 100), 20);
  assert.equal(percentile(twenty, 50), 10);
  const twoHundred = Array.from({ length: 200 }, (_, i) => i + 1);
  assert.equal(percentile(twoHundred, 95), 190);
  assert.equal(percentile([7], 95), 7);
  assert.throws(() => percentile([1], 0), RangeError);
  assert.throws(() => median([1, Number.NaN]), RangeError);
});

test('summarize and roundSamples', () => {
  const s = summarize([2, 4, 6, 8]);
  assert.deepEqual(s, { n: 4, median: 5, p95: 8, min: 2, max: 8, mean: 5 });
  assert.equal(summarize([]).n, 0);
  assert.deepEqual(roundSamples([1.23456789, 2]), [1.235, 2]);
});
