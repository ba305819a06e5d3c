import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FailedPreconditionError, InvalidArgumentError } from '../../../src/errors.js';
import {
  PROBE_SUCCESS_EXIT,
  KVM_USABLE_MS,
  interpretGuestRun,
  kvmProbeArgs,
  probeKernelImage,
  probeKvm,
  type DeviceCheck,
  type GuestRun,
  type KvmProbeRunner,
} from '../../../src/libvirt/kvm_probe.js';

/** Records calls; answers with the given device check and guest run. */
class FakeRunner implements KvmProbeRunner {
  deviceChecks: string[] = [];
  guests: { qemuPath: string; kernel: Uint8Array; timeoutMs: number }[] = [];
  constructor(
    private readonly device: DeviceCheck,
    private readonly run?: GuestRun,
  ) {}
  async checkDevice(path: string): Promise<DeviceCheck> {
    this.deviceChecks.push(path);
    return this.device;
  }
  async runGuest(qemuPath: string, kernel: Uint8Array, timeoutMs: number): Promise<GuestRun> {
    this.guests.push({ qemuPath, kernel, timeoutMs });
    if (!this.run) throw new Error('runGuest not expected');
    return this.run;
  }
}

const ok: DeviceCheck = { ok: true };
const missing: DeviceCheck = { ok: false, missing: true, reason: '/dev/kvm does not exist' };
const ran = (over: Partial<GuestRun>): GuestRun => ({ exitCode: PROBE_SUCCESS_EXIT, timedOut: false, stderr: '', elapsedMs: 180.4, ...over });

test('auto: a guest that exits through isa-debug-exit in time means kvm', async () => {
  const runner = new FakeRunner(ok, ran({}));
  const d = await probeKvm('auto', { runner, timeoutMs: 2000, qemuPath: '/opt/qemu', devicePath: '/dev/kvm-x' });
  assert.deepEqual(d, { domainType: 'kvm', reason: 'a KVM test guest booted and exited in 180 ms' });
  assert.deepEqual(runner.deviceChecks, ['/dev/kvm-x']);
  assert.equal(runner.guests.length, 1);
  assert.equal(runner.guests[0]!.qemuPath, '/opt/qemu');
  assert.equal(runner.guests[0]!.timeoutMs, 2000);
  assert.deepEqual(runner.guests[0]!.kernel, probeKernelImage());
});

test('auto: a guest killed at the deadline means qemu, with the reason', async () => {
  const d = await probeKvm('auto', { runner: new FakeRunner(ok, ran({ exitCode: null, timedOut: true, elapsedMs: 2501 })) });
  assert.equal(d.domainType, 'qemu');
  assert.match(d.reason, /did not finish within 2500 ms \(killed\)/);
});

test('auto: QEMU failing (kvm init error) means qemu and quotes its last non-warning line', async () => {
  const stderr = 'qemu-system-x86_64: warning: host lacks pni\nCould not access KVM kernel module: Permission denied\nqemu-system-x86_64: failed to initialize kvm: Permission denied\n';
  const d = await probeKvm('auto', { runner: new FakeRunner(ok, ran({ exitCode: 1, stderr })) });
  assert.equal(d.domainType, 'qemu');
  assert.match(d.reason, /exited with status 1: qemu-system-x86_64: failed to initialize kvm: Permission denied; using TCG$/);
});

test('auto: a missing device means qemu without starting a guest', async () => {
  const runner = new FakeRunner(missing);
  assert.deepEqual(await probeKvm('auto', { runner }), { domainType: 'qemu', reason: '/dev/kvm does not exist; using TCG' });
  assert.equal(runner.guests.length, 0);
});

test('auto: QEMU that cannot be started means qemu', async () => {
  const d = interpretGuestRun(ran({ exitCode: -2, spawnError: 'spawn /nope ENOENT' }), 2500);
  assert.equal(d.domainType, 'qemu');
  assert.match(d.reason, /spawn \/nope ENOENT/);
});

test('a timed-out run never counts as kvm, even if an exit status arrived', () => {
  assert.equal(interpretGuestRun(ran({ timedOut: true }), 2500).domainType, 'qemu');
  assert.equal(interpretGuestRun(ran({ exitCode: 0 }), 2500).domainType, 'qemu');
});

test('on: kvm when the device is usable, a clear error when it is not; off: qemu without probing', async () => {
  assert.equal((await probeKvm('on', { runner: new FakeRunner(ok) })).domainType, 'kvm');
  await assert.rejects(probeKvm('on', { runner: new FakeRunner(missing) }), (err) => {
    assert.ok(err instanceof FailedPreconditionError);
    assert.match(err.message, /kvm=on but \/dev\/kvm does not exist/);
    return true;
  });
  const runner = new FakeRunner(missing);
  assert.equal((await probeKvm('off', { runner })).domainType, 'qemu');
  assert.deepEqual(runner.deviceChecks, []);
});

test('bad mode and timeout are refused', async () => {
  await assert.rejects(probeKvm('maybe' as 'auto', { runner: new FakeRunner(ok) }), InvalidArgumentError);
  await assert.rejects(probeKvm('auto', { runner: new FakeRunner(ok), timeoutMs: 5 }), InvalidArgumentError);
});

test('the probe kernel is a valid Multiboot image whose code writes 0x2a to port 0xf4', () => {
  const image = probeKernelImage();
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const magic = view.getUint32(0, true);
  const flags = view.getUint32(4, true);
  const checksum = view.getUint32(8, true);
  assert.equal(magic, 0x1badb002);
  assert.equal((magic + flags + checksum) >>> 0, 0, 'the header words sum to zero');
  assert.ok(flags & 0x10000, 'load addresses present');
  const entry = view.getUint32(28, true);
  const loadAddr = view.getUint32(16, true);
  assert.equal(view.getUint32(12, true), loadAddr, 'header at the start of the image');
  assert.deepEqual([...image.subarray(entry - loadAddr, entry - loadAddr + 4)], [0xb0, 0x2a, 0xe6, 0xf4]);
  assert.equal(PROBE_SUCCESS_EXIT, (0x2a << 1) | 1);
  assert.ok(image.length <= 8192, 'Multiboot wants the header within the first 8 KiB');
});

test('the probe runs KVM only (no TCG fallback) with the debug-exit device at that port', () => {
  const args = kvmProbeArgs('/tmp/x/probe.bin');
  assert.deepEqual(args.slice(0, 2), ['-accel', 'kvm']);
  assert.ok(!args.some((a) => a.includes('tcg')));
  assert.equal(args[args.indexOf('-kernel') + 1], '/tmp/x/probe.bin');
  assert.equal(args[args.indexOf('-device') + 1], 'isa-debug-exit,iobase=0xf4,iosize=0x04');
});

test('a probe guest that exits but crawls (slower than KVM_USABLE_MS) means qemu, with the time in the reason', () => {
  const slow = interpretGuestRun(ran({ exitCode: PROBE_SUCCESS_EXIT, elapsedMs: KVM_USABLE_MS + 1111 }), 2500);
  assert.equal(slow.domainType, 'qemu');
  assert.match(slow.reason, new RegExp(`took ${KVM_USABLE_MS + 1111} ms`));
  assert.equal(interpretGuestRun(ran({ exitCode: PROBE_SUCCESS_EXIT, elapsedMs: 180 }), 2500).domainType, 'kvm');
});
