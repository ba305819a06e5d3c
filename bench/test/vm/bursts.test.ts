import { test } from 'node:test';
import assert from 'node:assert/strict';
import { burstRows, nftCounts, type BurstRun } from '../../vm/bursts.js';

test('burstRows: shares of all, warm and cold pods per burst; failed pods counted apart', () => {
  const run: BurstRun = {
    pool: 'p', mode: 'back-to-back', idleAtStart: 1, settleWaitMs: 5, wallMs: 900,
    pods: [
      { name: 'a', vmletMs: 100, gotWarm: true },
      { name: 'b', vmletMs: 400, gotWarm: false },
      { name: 'c', vmletMs: 300, gotWarm: false },
      { name: 'd', error: 'boom' },
    ],
  };
  const [row] = burstRows([run]);
  assert.equal(row!.label, 'p, back-to-back');
  assert.deepEqual([row!.warm, row!.cold, row!.failed, row!.idleAtStart], [1, 2, 1, 1]);
  assert.deepEqual([row!.share.n, row!.share.median, row!.share.max], [3, 300, 400]);
  assert.equal(row!.warmShare.median, 100);
  assert.equal(row!.coldShare.median, 350);
});

test('nftCounts: tables, chains and rules of `nft --json list ruleset`, the metainfo left out', () => {
  const json = JSON.stringify({ nftables: [
    { metainfo: { version: '1.0.6' } },
    { table: { family: 'inet', name: 'vmlet' } },
    { chain: { family: 'inet', table: 'vmlet', name: 'fwd' } },
    { rule: { family: 'inet', table: 'vmlet', chain: 'fwd' } },
    { rule: { family: 'inet', table: 'vmlet', chain: 'fwd' } },
  ] });
  assert.deepEqual(nftCounts(json), { tables: 1, chains: 1, rules: 2 });
  assert.deepEqual(nftCounts('{"nftables":[{"metainfo":{}}]}'), { tables: 0, chains: 0, rules: 0 });
});
