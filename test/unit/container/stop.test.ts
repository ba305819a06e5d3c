/**
 * StopContainer returns within its timeout, forced destroy included (CRI StopContainer; critest
 * "stopping container"; kubelet's grace period), on a fake clock: the ACPI grace period ends
 * DESTROY_MARGIN_MS before the deadline, and a timeout shorter than the margin destroys at once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertGolden } from '../../helpers/golden.js';
import { containerHarness, containerSpec } from '../../helpers/container_harness.js';
import { acpiGraceMs } from '../../../src/container/stop.js';
import { DESTROY_MARGIN_MS } from '../../../src/container/context.js';
import { VM_DIR } from '../../../src/container/layout.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

async function runningContainer(t: Parameters<typeof containerHarness>[0]) {
  const h = await containerHarness(t);
  const id = await h.clock.run(h.service.create(containerSpec()));
  await h.clock.run(h.service.start(id));
  h.log.lines.length = 0;
  return { h, id };
}

/** Stops `id` and answers when the call came back, in virtual ms from its start. */
async function timedStop(h: Awaited<ReturnType<typeof containerHarness>>, id: string, timeoutS: number): Promise<number> {
  const started = h.clock.monotonicMs();
  await h.clock.run(h.service.stop(id, timeoutS));
  return h.clock.monotonicMs() - started;
}

test('the grace period leaves the destroy margin before the deadline', () => {
  assert.equal(acpiGraceMs(60_000, 0, 3000), 57_000);
  assert.equal(acpiGraceMs(60_000, 500, 3000), 56_500, 'time already spent (lock, lookup) counts');
  assert.equal(acpiGraceMs(2000, 0, 3000), -1000, 'shorter than the margin: no grace at all');
});

test('a guest that ignores ACPI is destroyed in time for the call to end within the timeout, and exits 137', async (t) => {
  const { h, id } = await runningContainer(t);
  h.ops.guest = { acpi: 'ignores', acpiMs: 0 };
  h.log.step(`StopContainer timeout=10 (guest ignores ACPI; destroy takes ${h.ops.destroyMs} ms; margin ${DESTROY_MARGIN_MS} ms)`);
  const took = await timedStop(h, id, 10);
  assert.ok(took <= 10_000, `StopContainer took ${took} ms of a 10 s timeout`);
  assert.equal(took, 10_000 - DESTROY_MARGIN_MS + h.ops.destroyMs);
  const r = h.service.get(id)!;
  assert.deepEqual([r.state, r.exitCode, r.reason], ['EXITED', 137, 'Error']);
  assertGolden('container/stop_ignores_acpi.log', h.log.text());
});

test('critest\'s 60 s timeout: the call is back within 60 s, not after 60 s plus the destroy', async (t) => {
  const { h, id } = await runningContainer(t);
  h.ops.guest = { acpi: 'ignores', acpiMs: 0 };
  const took = await timedStop(h, id, 60);
  assert.ok(took <= 60_000, `StopContainer took ${took} ms of a 60 s timeout`);
  assert.ok(h.log.lines.some((l) => /^ 57000 ms {2}libvirt destroy /.test(l)), 'destroy starts when the grace period ends');
});

test('a timeout shorter than the destroy margin destroys at once, without asking the guest', async (t) => {
  const { h, id } = await runningContainer(t);
  const took = await timedStop(h, id, 2);
  assert.equal(took, h.ops.destroyMs);
  assert.ok(!h.log.includes('libvirt shutdown'), 'no ACPI request');
  assert.equal(h.service.get(id)!.exitCode, 137);
});

test('a guest that powers off within the grace period exits 0 and is not destroyed', async (t) => {
  const { h, id } = await runningContainer(t);
  h.ops.guest = { acpi: 'obeys', acpiMs: 4000 };
  const took = await timedStop(h, id, 10);
  assert.equal(took, 4000);
  assert.ok(!h.log.includes('libvirt destroy'));
  assert.deepEqual([h.service.get(id)!.exitCode, h.service.get(id)!.reason], [0, 'Completed']);
});

test('a guest that would power off after the grace period is destroyed instead', async (t) => {
  const { h, id } = await runningContainer(t);
  h.ops.guest = { acpi: 'obeys', acpiMs: 8000 };
  const took = await timedStop(h, id, 10);
  assert.ok(took <= 10_000);
  assert.equal(h.service.get(id)!.exitCode, 137);
});

/** A running container on a harness that watches QEMU (vm_exit.ts). */
async function watchedContainer(t: Parameters<typeof containerHarness>[0]) {
  const h = await containerHarness(t, { watchQemu: true });
  const id = await h.clock.run(h.service.create(containerSpec()));
  await h.clock.run(h.service.start(id));
  h.log.lines.length = 0;
  return { h, id };
}

test('timeout 0 with QEMU watched: back when QEMU exited, not when libvirt answers; Remove undefines after libvirt did', async (t) => {
  const { h, id } = await watchedContainer(t);
  let libvirtAnswers!: () => void;
  h.ops.destroyGate = new Promise((r) => (libvirtAnswers = r));
  h.log.step(`StopContainer timeout=0 (QEMU exits ${h.ops.qemuExitMs} ms into the destroy; libvirt answers when the test says)`);
  const took = await timedStop(h, id, 0);
  assert.ok(took < 50, `StopContainer took ${took} ms`);
  assert.deepEqual([h.service.get(id)!.state, h.service.get(id)!.exitCode], ['EXITED', 137]);
  h.log.step('RemoveContainer at once: the record goes; the domain and files after libvirt\'s destroy');
  await h.clock.run(h.service.remove(id));
  assert.equal(h.service.get(id), undefined);
  assert.ok(!h.log.includes('libvirt undefine'), 'no undefine while libvirt is still destroying');
  const dir = join(h.root, VM_DIR, id);
  assert.ok(existsSync(dir), 'the VM directory stays until the domain is undefined');
  h.log.step('libvirt answers the destroy');
  libvirtAnswers();
  await h.clock.run(h.service.settle());
  assert.equal(h.ops.domains.size, 0);
  assert.ok(!existsSync(dir));
  assertGolden('container/stop_watched_qemu.log', h.log.text());
});

test('a destroy that libvirt refuses before QEMU exits fails the stop', async (t) => {
  const { h, id } = await watchedContainer(t);
  h.ops.failNext('destroy', new Error('libvirt says no (fake)'));
  await assert.rejects(h.clock.run(h.service.stop(id, 0)), /libvirt says no/);
  assert.equal(h.service.get(id)!.state, 'RUNNING');
});

test('ACPI with QEMU watched: a guest that powers off ends the stop at QEMU\'s exit, exit code 0', async (t) => {
  const { h, id } = await watchedContainer(t);
  h.ops.guest = { acpi: 'obeys', acpiMs: 700 };
  const took = await timedStop(h, id, 30);
  assert.ok(took >= 700 && took < 800, `StopContainer took ${took} ms`);
  assert.deepEqual([h.service.get(id)!.exitCode, h.service.get(id)!.reason], [0, 'Completed']);
  assert.ok(!h.log.includes('libvirt destroy'));
});
