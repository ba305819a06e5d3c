/**
 * CniCheckCache: a report answers while younger than the minimum age and of the same network;
 * concurrent asks share one CHECK; delete() (teardown, re-setup) and a changed network force a
 * new one; a CHECK overtaken by delete() is not stored. Time is a variable, CHECKs are promises
 * the test resolves.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CNI_CHECK_MIN_AGE_MS, CniCheckCache } from '../../../src/netd/cni_check_cache.js';
import type { CniCheckReport } from '../../../src/netd/protocol.js';

function harness() {
  let now = 1_000;
  const networks = new Map<string, string>([['pod1', 'net-a']]);
  const pending: { sandboxId: string; resolve: (r: CniCheckReport | undefined) => void; reject: (err: Error) => void }[] = [];
  let runs = 0;
  const cache = new CniCheckCache({
    run: (sandboxId) => {
      runs++;
      return new Promise((resolve, reject) => pending.push({ sandboxId, resolve, reject }));
    },
    networkOf: (id) => networks.get(id),
    nowMs: () => now,
  });
  const reportNo = (n: number): CniCheckReport => ({ at: `run ${n}`, ok: true, networks: [] });
  /** Finishes the oldest pending CHECK with a report naming its run. */
  const finish = async (): Promise<void> => {
    const p = pending.shift()!;
    p.resolve(reportNo(runs - pending.length));
    await new Promise((r) => setImmediate(r));
  };
  /** A verbose status whose CHECK (if one starts) finishes at once. */
  const reportNow = async (): Promise<CniCheckReport | undefined> => {
    const report = cache.report('pod1', CNI_CHECK_MIN_AGE_MS);
    if (pending.length > 0) await finish();
    return report;
  };
  return {
    cache, networks, pending, finish, reportNow,
    runs: () => runs,
    advance: (ms: number) => void (now += ms),
  };
}

test('a report answers until it is CNI_CHECK_MIN_AGE_MS old; then a new CHECK runs', async () => {
  const h = harness();
  assert.equal((await h.reportNow())?.at, 'run 1');
  h.advance(CNI_CHECK_MIN_AGE_MS - 1);
  assert.equal((await h.cache.report('pod1', CNI_CHECK_MIN_AGE_MS))?.at, 'run 1', 'young: no CHECK');
  assert.equal(h.runs(), 1);
  h.advance(1);
  assert.equal((await h.reportNow())?.at, 'run 2', 'old enough: CHECK again');
  assert.equal(h.cache.get('pod1')?.at, 'run 2');
});

test('the age counts from when the CHECK started, not from when it ended', async () => {
  const h = harness();
  const first = h.cache.report('pod1', CNI_CHECK_MIN_AGE_MS);
  h.advance(CNI_CHECK_MIN_AGE_MS);
  await h.finish();
  await first;
  const second = h.cache.report('pod1', CNI_CHECK_MIN_AGE_MS);
  assert.equal(h.runs(), 2);
  await h.finish();
  await second;
});

test('concurrent asks share the CHECK in flight, and all get its report', async () => {
  const h = harness();
  const asks = [h.cache.report('pod1', CNI_CHECK_MIN_AGE_MS), h.cache.report('pod1', CNI_CHECK_MIN_AGE_MS), h.cache.report('pod1', 0)];
  assert.equal(h.runs(), 1);
  await h.finish();
  assert.deepEqual((await Promise.all(asks)).map((r) => r?.at), ['run 1', 'run 1', 'run 1']);
});

test('a failed CHECK reaches every waiter and is not kept: the next ask runs one', async () => {
  const h = harness();
  const asks = [h.cache.report('pod1', CNI_CHECK_MIN_AGE_MS), h.cache.report('pod1', CNI_CHECK_MIN_AGE_MS)];
  h.pending.shift()!.reject(new Error('cache unreadable'));
  for (const a of asks) await assert.rejects(a, /cache unreadable/);
  const next = h.cache.report('pod1', CNI_CHECK_MIN_AGE_MS);
  assert.equal(h.runs(), 2);
  await h.finish();
  assert.equal((await next)?.at, 'run 2');
});

test('delete (teardown, re-setup) forgets the report, and a CHECK it overtook is not stored', async () => {
  const h = harness();
  await h.reportNow();
  h.cache.delete('pod1');
  assert.equal(h.cache.get('pod1'), undefined);
  const during = h.cache.report('pod1', CNI_CHECK_MIN_AGE_MS);
  assert.equal(h.runs(), 2, 'nothing young to reuse');
  h.cache.delete('pod1');
  const after = h.cache.report('pod1', CNI_CHECK_MIN_AGE_MS);
  assert.equal(h.runs(), 3, 'the CHECK from before delete is not joined');
  await h.finish();
  await during;
  assert.equal(h.cache.get('pod1'), undefined, 'the overtaken CHECK is not stored');
  await h.finish();
  assert.equal((await after)?.at, 'run 3');
  assert.equal(h.cache.get('pod1')?.at, 'run 3');
});

test('a changed network (the VM side took an interface over) is checked again; no network, no CHECK', async () => {
  const h = harness();
  await h.reportNow();
  h.networks.set('pod1', 'net-a wired');
  assert.equal((await h.reportNow())?.at, 'run 2');

  // The network changes while a CHECK runs: its report is returned to its callers but not kept.
  h.advance(CNI_CHECK_MIN_AGE_MS);
  const third = h.cache.report('pod1', CNI_CHECK_MIN_AGE_MS);
  h.networks.set('pod1', 'net-b');
  await h.finish();
  assert.equal((await third)?.at, 'run 3');
  assert.equal(h.cache.get('pod1')?.at, 'run 2');

  h.networks.delete('pod1');
  assert.equal(await h.cache.report('pod1', CNI_CHECK_MIN_AGE_MS), undefined);
  assert.equal(h.runs(), 3);
});
