import { test } from 'node:test';
import assert from 'node:assert/strict';
import { podBreakdown } from '../../vm/log_breakdown.js';

const SB = 'c'.repeat(64);

/** One pod's lines in the order the shared pipe delivers them (netd's before serve's rpc line). */
function window(): Record<string, unknown>[] {
  return [
    { msg: 'netns created' },
    { msg: 'sandbox network set up', sandboxId: SB, stepsMs: { record: 5, netns: 6, 'cni-add': 20, wire: 10 } },
    { msg: 'netd call', method: 'setup', durationMs: 45 },
    { msg: 'rpc', method: 'RunPodSandbox', durationMs: 52 },
    { msg: 'netd call', method: 'vmNetwork', durationMs: 90 },
    { msg: 'rpc', method: 'CreateContainer', durationMs: 110 },
    { msg: 'netd call', method: 'vmNetwork', durationMs: 0.1 },
    { msg: 'rpc', method: 'StartContainer', durationMs: 600 },
    { msg: 'netd call', method: 'status', durationMs: 0.1 },
    { msg: 'rpc', method: 'PodSandboxStatus', durationMs: 1 },
  ];
}

test('podBreakdown splits Run, Create and Start by the daemon lines', () => {
  const b = podBreakdown(window(), SB, { RunPodSandbox: 55, CreateContainer: 114, StartContainer: 604 })!;
  assert.equal(b.RunPodSandbox, 55);
  assert.equal(b['  Run: gRPC + client (round trip - handler)'], 3);
  assert.equal(b['    serve own work (records, IPC) (handler - netd setup)'], 7);
  assert.equal(b['      netd step cni-add'], 20);
  assert.equal(b['      netd setup - its steps (CNI config load, DHCP kick-off)'], 4);
  assert.equal(b['    netd vmNetwork (wait for the VM side: wiring + DHCP, beside the overlay)'], 90);
  assert.equal(b['    handler - vmNetwork (seed, define, record, and overlay time the wait did not cover)'], 20);
  assert.equal(b['  Start: gRPC + client'], 4);
  assert.equal(b['    handler - vmNetwork (console pump, lookup, libvirt start, record)'], 599.9);
  // Rows come in table order: Run's parts, then Create's, then Start's.
  const keys = Object.keys(b);
  assert.ok(keys.indexOf('RunPodSandbox') < keys.indexOf('CreateContainer') && keys.indexOf('CreateContainer') < keys.indexOf('StartContainer'));
});

test('podBreakdown refuses a window that is not one pod', () => {
  const ms = { RunPodSandbox: 1, CreateContainer: 1, StartContainer: 1 };
  assert.equal(podBreakdown(window().slice(0, 6), SB, ms), undefined, 'no StartContainer line');
  assert.equal(podBreakdown([...window(), ...window()], SB, ms), undefined, 'two pods');
});
