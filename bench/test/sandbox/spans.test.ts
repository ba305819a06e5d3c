import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { SpanRecorder, spanRows } from '../../sandbox/spans.js';

class Store {
  writes = 0;
  async put(): Promise<void> {
    this.writes++;
    await sleep(5);
  }
}

class Worker {
  constructor(readonly store: Store) {}
  async job(n: number): Promise<string> {
    for (let i = 0; i < n; i++) await this.store.put();
    await Promise.all([this.store.put(), sleep(1)]);
    return 'done';
  }
}

test('SpanRecorder nests spans by async context and keeps behaviour and results', async () => {
  const spans = new SpanRecorder();
  const store = new Store();
  const worker = new Worker(store);
  spans.wrap(worker, 'job', (args) => `job ${args[0]}`);
  spans.wrap(store, 'put', 'put');
  assert.equal(await worker.job(2), 'done');
  await store.put(); // outside any job: a root span
  const totals = spans.take();
  assert.equal(store.writes, 4);
  assert.deepEqual(Object.keys(totals).sort(), ['job 2', 'job 2 > put', 'put']);
  assert.equal(totals['job 2 > put']!.count, 3);
  assert.equal(totals['put']!.count, 1);
  // Three 5 ms sleeps; Node's timers may fire up to 1 ms early against performance.now().
  assert.ok(totals['job 2']!.ms >= 14, `job took ${totals['job 2']!.ms} ms`);
  assert.ok(totals['job 2']!.ms >= totals['job 2 > put']!.ms - 1);
  assert.deepEqual(spans.take(), {});
  assert.throws(() => spans.wrap(store, 'missing', 'x'), /not a method/);
});

test('spanRows: tree order, children by time, (other) = parent minus children, medians over iterations', () => {
  const rows = spanRows([
    { setup: { count: 1, ms: 100 }, 'setup > a': { count: 2, ms: 30 }, 'setup > b': { count: 1, ms: 60 }, teardown: { count: 1, ms: 10 } },
    { setup: { count: 1, ms: 120 }, 'setup > a': { count: 2, ms: 40 }, 'setup > b': { count: 1, ms: 70 }, teardown: { count: 1, ms: 12 } },
    { setup: { count: 1, ms: 110 }, 'setup > a': { count: 2, ms: 35 }, 'setup > b': { count: 1, ms: 65 } },
  ]);
  assert.deepEqual(
    rows.map((r) => [r.path, r.depth, r.calls, r.medianMs]),
    [
      ['setup', 0, 1, 110],
      ['setup > b', 1, 1, 65],
      ['setup > a', 1, 2, 35],
      ['setup > (other)', 1, 1, 10],
      ['teardown', 0, 1, 10],
    ],
  );
  assert.equal(rows[0]!.name, 'setup');
  assert.equal(rows[1]!.name, 'b');
});
