/**
 * Finding a domain's QEMU from libvirt's pid file and /proc, and telling when it has exited,
 * against a fake /proc tree (the real one is exercised by test/integration/e2e/vm_pod.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProcQemuProcesses, hasExited, isQemuOf, parseProcStat } from '../../../src/libvirt/qemu_process.js';

const stat = (pid: number, comm: string, state: string, start: string) =>
  `${pid} (${comm}) ${state} 1 ${pid} ${pid} 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 4 0 ${start} 123456789 1000 18446744073709551615\n`;

test('a /proc stat line: state and start time, a command name with spaces and parentheses included', () => {
  assert.deepEqual(parseProcStat(stat(42, 'qemu-system-x86', 'S', '9001')), { state: 'S', startTime: '9001' });
  assert.deepEqual(parseProcStat(stat(42, 'a) b (c', 'Z', '77')), { state: 'Z', startTime: '77' });
  assert.equal(parseProcStat('42 (x) S 1 2'), undefined);
  assert.equal(parseProcStat('garbage'), undefined);
});

test('exited: zombie, dead, gone, or the pid reused by another process', () => {
  const proc = { pid: 42, startTime: '100' };
  assert.equal(hasExited({ state: 'S', startTime: '100' }, proc), false);
  assert.equal(hasExited({ state: 'R', startTime: '100' }, proc), false);
  assert.equal(hasExited({ state: 'Z', startTime: '100' }, proc), true);
  assert.equal(hasExited({ state: 'X', startTime: '100' }, proc), true);
  assert.equal(hasExited(undefined, proc), true);
  assert.equal(hasExited({ state: 'S', startTime: '200' }, proc), true);
});

test('the command line must be QEMU\'s for that very domain', () => {
  const cmd = (name: string) => ['/usr/bin/qemu-system-x86_64', '-name', `guest=${name},debug-threads=on`, '-S'].join('\0');
  assert.equal(isQemuOf(cmd('vmlet-warm-abc'), 'vmlet-warm-abc'), true);
  assert.equal(isQemuOf(cmd('vmlet-warm-abcd'), 'vmlet-warm-abc'), false);
  assert.equal(isQemuOf('/bin/sleep\x00100', 'vmlet-warm-abc'), false);
});

test('find() through the pid file and waitForExit() until the process turns zombie', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'vmlet-qemu-proc-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const run = join(root, 'run');
  const proc = join(root, 'proc');
  mkdirSync(run);
  mkdirSync(join(proc, '4242'), { recursive: true });
  writeFileSync(join(run, 'dom1.pid'), '4242');
  writeFileSync(join(run, 'other.pid'), '4242');
  writeFileSync(join(run, 'bad.pid'), 'x');
  writeFileSync(join(proc, '4242', 'cmdline'), ['qemu', '-name', 'guest=dom1,debug-threads=on'].join('\0'));
  writeFileSync(join(proc, '4242', 'stat'), stat(4242, 'qemu-system-x86', 'S', '555'));
  const q = new ProcQemuProcesses(run, proc);
  assert.deepEqual(await q.find('dom1'), { pid: 4242, startTime: '555' });
  assert.equal(await q.find('other'), undefined, 'the pid runs another domain');
  assert.equal(await q.find('bad'), undefined);
  assert.equal(await q.find('none'), undefined);
  assert.equal(await q.find('../x'), undefined);

  const found = (await q.find('dom1'))!;
  assert.equal(await q.waitForExit(found, 30), false, 'still running after the timeout');
  const controller = new AbortController();
  controller.abort();
  assert.equal(await q.waitForExit(found, 10_000, controller.signal), false, 'aborted');
  setTimeout(() => writeFileSync(join(proc, '4242', 'stat'), stat(4242, 'qemu-system-x86', 'Z', '555')), 30);
  const t0 = performance.now();
  assert.equal(await q.waitForExit(found, 5000), true);
  assert.ok(performance.now() - t0 < 1000);
  rmSync(join(proc, '4242'), { recursive: true });
  assert.equal(await q.waitForExit(found, 5000), true, 'gone');
});
