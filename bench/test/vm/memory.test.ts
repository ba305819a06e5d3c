import { test } from 'node:test';
import assert from 'node:assert/strict';
import { growthVerdict, leastSquaresSlope, rssGrowth, PER_VM_TARGET_KIB } from '../../vm/memory.js';

test('leastSquaresSlope fits a line and refuses degenerate input', () => {
  assert.equal(leastSquaresSlope([{ x: 0, y: 10 }, { x: 1, y: 12 }, { x: 2, y: 14 }]), 2);
  assert.equal(leastSquaresSlope([{ x: 0, y: 0 }, { x: 1, y: 3 }, { x: 2, y: 2 }, { x: 3, y: 5 }]), 1.4);
  assert.ok(Number.isNaN(leastSquaresSlope([{ x: 1, y: 1 }])));
  assert.ok(Number.isNaN(leastSquaresSlope([{ x: 1, y: 1 }, { x: 1, y: 2 }])));
});

test('rssGrowth: slope, endpoint and what stays after removal', () => {
  const baseline = { runningVms: 0, serveKiB: 100_000, netdKiB: 50_000 };
  const running = [1, 2, 3, 4].map((k) => ({ runningVms: k, serveKiB: 100_000 + 300 * k, netdKiB: 50_000 + 1000 * k }));
  const after = { runningVms: 0, serveKiB: 100_100, netdKiB: 50_400 };
  const serve = rssGrowth('serveKiB', baseline, running, after);
  assert.deepEqual(serve, { slopeKiB: 300, endpointKiB: 300, retainedKiB: 100 });
  assert.equal(growthVerdict(serve), 'PASS');
  const netd = rssGrowth('netdKiB', baseline, running, after);
  assert.equal(netd.slopeKiB, 1000);
  assert.equal(growthVerdict(netd), 'MISS');
  assert.ok(PER_VM_TARGET_KIB >= 300 && PER_VM_TARGET_KIB < 1000);
});

test('rssGrowth without readings gives NaN and no verdict', () => {
  const g = rssGrowth('netdKiB', { runningVms: 0 }, [], undefined);
  assert.ok(Number.isNaN(g.slopeKiB) && Number.isNaN(g.endpointKiB) && Number.isNaN(g.retainedKiB));
  assert.equal(growthVerdict(g), '-');
});
