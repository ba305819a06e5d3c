/**
 * Faults at every step of a pod's life: serve or netd SIGKILLs itself at each test-only fault
 * point (src/fault_points.ts), vmlet is restarted on the same dirs, everything is removed through
 * the CRI, a clean pod runs, and nothing the faulted pod made is left on the host. Cold VMs at
 * every point, warm VMs at the points where a warm VM is claimed, used or given back. The
 * 200-cycle run with figures is `npm run bench -- faults`. Pod network: 198.18.238.0/24.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { clearStaleTestSubnet } from '../../helpers/e2e.js';
import { countLeftovers, createFaultRig, runFaultCycle, WARM_FAULT_POINTS, type CycleResult } from '../../helpers/fault_cycles.js';
import { FAULT_POINTS } from '../../../src/fault_points.js';

const SUBNET_PREFIX = '198.18.238';
let rig: Awaited<ReturnType<typeof createFaultRig>> | undefined;
const results: CycleResult[] = [];

before(async () => {
  await ensureLibvirtd();
  clearStaleTestSubnet(SUBNET_PREFIX);
  rig = await createFaultRig(SUBNET_PREFIX);
});

after(async () => {
  if (results.length > 0) {
    const rows = results.map((r) => `${r.warm ? 'warm' : 'cold'} ${r.point.padEnd(36)} broke ${(r.brokenCall ?? '-').padEnd(16)} ${String(r.ms).padStart(6)} ms  fds ${r.serveFds}  rss ${r.rssKiB} KiB`);
    process.stderr.write(`fault cycles:\n${rows.join('\n')}\n`);
  }
  await rig?.close();
});

function check(r: CycleResult, baselineFds: number | undefined): void {
  const what = `${r.warm ? 'warm' : 'cold'} VM, fault at ${r.point}`;
  assert.ok(r.faulted, `${what}: the point was never reached (broken call: ${r.brokenCall ?? 'none'})`);
  // serve's death ends the call it was in; netd's only when serve's restarted netd cannot recover in place.
  if (!r.point.startsWith('netd.')) assert.ok(r.brokenCall !== undefined, `${what}: a SIGKILL of serve mid-pod must break one of its calls`);
  assert.ok(r.healthy, `${what}: after the restart a clean pod did not run`);
  assert.deepEqual(r.leftovers, {}, `${what}: left behind`);
  // Each cycle's clean daemon did the same work; a leaked fd per fault would show as growth.
  if (baselineFds !== undefined) assert.ok(r.serveFds <= baselineFds + 4, `${what}: serve has ${r.serveFds} fds after cleanup, the first cycle had ${baselineFds}`);
}

test('SIGKILL of serve or netd at every fault point, cold VMs: restart, remove, nothing left, the runtime works', { timeout: 1_800_000 }, async () => {
  let i = 0;
  for (const point of FAULT_POINTS) {
    const r = await runFaultCycle(rig!, point, { warm: false, index: i++ });
    results.push(r);
    check(r, results[0]!.serveFds);
  }
});

test('SIGKILL at the warm-VM points (claim, adopt, resume, give back): nothing left', { timeout: 1_200_000 }, async () => {
  let i = 100;
  for (const point of WARM_FAULT_POINTS) {
    const r = await runFaultCycle(rig!, point, { warm: true, index: i++ });
    results.push(r);
    check(r, undefined);
  }
  assert.deepEqual(await countLeftovers(rig!, []), {});
});
