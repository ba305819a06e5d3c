import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSpanLines, summarizeSpans, UNTIMED } from '../../vm/span_profile.js';
import type { RootSpanRecord } from '../../vm/span_record.js';

function create(durMs: number, waitMs: number, ok = true): RootSpanRecord {
  return {
    root: 'CreateContainer',
    startedAt: 0,
    durMs,
    ok,
    spans: {
      'await VM side of the sandbox': [1, waitMs, 0, waitMs],
      'await VM side of the sandbox > netd vmNetwork': [1, waitMs - 1, 0.5, waitMs],
      'exec qemu-img create': [1, 15, 5, 20],
      'libvirt define': [1, 5, waitMs, waitMs + 5],
    },
  };
}

test('summarizeSpans: medians per path in tree order, untimed rows, warm-up and failures left out', () => {
  const records = [create(900, 800), create(160, 150), create(170, 160), create(180, 170), create(5, 1, false)];
  const [s] = summarizeSpans(records, 1);
  assert.equal(s!.root, 'CreateContainer');
  assert.equal(s!.n, 3);
  assert.equal(s!.failed, 1);
  assert.equal(s!.medianMs, 170);
  assert.deepEqual(
    s!.rows.map((r) => [r.path, r.depth, r.medianMs]),
    [
      ['await VM side of the sandbox', 0, 160],
      ['await VM side of the sandbox > netd vmNetwork', 1, 159],
      [`await VM side of the sandbox > ${UNTIMED}`, 1, 1],
      ['exec qemu-img create', 0, 15],
      ['libvirt define', 0, 5],
      [UNTIMED, 0, 170 - 160 - 15 - 5],
    ],
  );
  assert.equal(s!.rows.find((r) => r.path === 'libvirt define')!.startMs, 160);
});

test('parseSpanLines keeps whole records only', () => {
  const good = JSON.stringify(create(1, 1));
  const parsed = parseSpanLines(`${good}\n{"root":"x"}\nnoise\n${good.slice(0, 20)}`);
  assert.equal(parsed.length, 1);
  assert.equal(parsed[0]!.root, 'CreateContainer');
});
