import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  cpuSnapshot,
  findChildren,
  machineBusyTicks,
  otherCpuCores,
  parentPidFromStat,
  processTicks,
  readMemory,
  statusFieldKiB,
} from '../../lib/proc.js';

test('status and stat parsing', () => {
  const status = 'Name:\tnode\nVmHWM:\t  81234 kB\nVmRSS:\t   70000 kB\n';
  assert.equal(statusFieldKiB(status, 'VmRSS'), 70000);
  assert.equal(statusFieldKiB(status, 'VmHWM'), 81234);
  assert.equal(statusFieldKiB(status, 'VmSwap'), undefined);
  // A command name with spaces and a ")" must not shift the fields.
  const stat = '4242 (odd) name) S 17 4242 4242 0 -1 4194560 10 0 0 0 150 30 7 3 20 0 1 0 100 0 0';
  assert.equal(parentPidFromStat(stat), 17);
  assert.equal(processTicks(stat), 150 + 30 + 7 + 3);
  assert.equal(machineBusyTicks('cpu  100 5 50 1000 20 3 7 11 0 0\ncpu0 1 2 3\n'), 100 + 5 + 50 + 3 + 7 + 11);
  assert.equal(otherCpuCores({ atMs: 0, machineTicks: 0, ownTicks: 0 }, { atMs: 2000, machineTicks: 300, ownTicks: 100 }), 1);
});

test('real /proc: this process has a resident set, and a child is found by its argv', async (t) => {
  const mem = await readMemory(process.pid);
  assert.ok(mem && mem.rssKiB > 1000 && mem.hwmKiB >= mem.rssKiB, JSON.stringify(mem));
  assert.equal(await readMemory(2 ** 22 + 1), undefined);
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  t.after(() => child.kill('SIGKILL'));
  await new Promise((r) => child.once('spawn', r));
  assert.deepEqual(await findChildren(process.pid, ['sleep', '30']), [child.pid]);
  assert.deepEqual(await findChildren(process.pid, ['netd']), []);
  const a = await cpuSnapshot([process.pid]);
  const b = await cpuSnapshot([process.pid]);
  assert.ok(b.machineTicks >= a.machineTicks && b.ownTicks >= a.ownTicks);
});
