import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { pool, InterruptedError } from '../../lib/pool.js';

test('pool keeps at most `concurrency` in flight and returns results in index order', async () => {
  let inFlight = 0;
  let most = 0;
  const out = await pool(9, 3, new AbortController().signal, async (i) => {
    inFlight++;
    most = Math.max(most, inFlight);
    await sleep(9 - i);
    inFlight--;
    return i * 10;
  });
  assert.deepEqual(out, [0, 10, 20, 30, 40, 50, 60, 70, 80]);
  assert.equal(most, 3);
});

test('after a failure no new index starts; the first failure is thrown once the rest finished', async () => {
  const started: number[] = [];
  let finished = 0;
  await assert.rejects(
    pool(10, 2, new AbortController().signal, async (i) => {
      started.push(i);
      await sleep(i === 1 ? 1 : 20);
      if (i === 1) throw new Error('boom');
      finished++;
    }),
    /boom/,
  );
  assert.deepEqual(started, [0, 1]);
  assert.equal(finished, 1);
});

test('an abort stops new work and throws InterruptedError', async () => {
  const ac = new AbortController();
  const started: number[] = [];
  await assert.rejects(
    pool(10, 1, ac.signal, async (i) => {
      started.push(i);
      if (i === 2) ac.abort();
    }),
    InterruptedError,
  );
  assert.deepEqual(started, [0, 1, 2]);
});
