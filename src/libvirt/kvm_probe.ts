/**
 * Decides the libvirt domain type: `kvm` or `qemu` (TCG).
 *
 * /dev/kvm existing, and libvirt listing domain type kvm, do not mean KVM works: on this project's
 * hosts both are true while a KVM guest crawls (SeaBIOS alone takes ~7 s instead of ~0.1 s, a
 * Linux guest never gets past the BIOS). So `auto` boots a real, tiny guest with `-accel kvm`
 * along the same path every domain takes (SeaBIOS, then its option ROM loads a `-kernel`) and
 * calls KVM usable only if that guest finishes within a deadline. The guest is a 39-byte
 * Multiboot kernel that writes one byte to QEMU's isa-debug-exit port, which makes QEMU exit with
 * a status no other outcome produces. A guest that does not finish in time is killed by pid.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { KvmMode } from '../config/table.js';
import { FailedPreconditionError, InvalidArgumentError, errorText } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { DomainType } from './domain_spec.js';

export interface KvmDecision {
  domainType: DomainType;
  /** One sentence for logs and `vmlet` status output: why this type. */
  reason: string;
}

export type DeviceCheck = { ok: true } | { ok: false; missing: boolean; reason: string };

export interface GuestRun {
  /** QEMU's exit status, or null when it was killed or never started. */
  exitCode: number | null;
  /** True when the deadline passed and the guest was killed. */
  timedOut: boolean;
  /** Set when QEMU could not be started at all. */
  spawnError?: string;
  /** Tail of QEMU's stderr (for the reason). */
  stderr: string;
  elapsedMs: number;
}

/** The side effects of a probe, so unit tests can replace them. */
export interface KvmProbeRunner {
  /** Whether `path` is a character device this process can open read-write. */
  checkDevice(path: string): Promise<DeviceCheck>;
  /** Boots `kernel` with `kvmProbeArgs` under `qemuPath`; kills it by pid after `timeoutMs`. */
  runGuest(qemuPath: string, kernel: Uint8Array, timeoutMs: number): Promise<GuestRun>;
}

export interface ProbeKvmOptions {
  qemuPath?: string;
  devicePath?: string;
  /** Deadline for the test guest. A working KVM finishes in ~0.2 s; TCG here takes ~0.3-0.4 s. */
  timeoutMs?: number;
  runner?: KvmProbeRunner;
  logger?: Logger;
}

export const DEFAULT_KVM_DEVICE = '/dev/kvm';
export const DEFAULT_PROBE_TIMEOUT_MS = 2_500;
/**
 * A probe guest that exits, but later than this, ran on a KVM that crawls: a working KVM finishes
 * in ~0.2 s and TCG in ~0.15 s, while on hosts where real KVM guests fail (SYSLINUX stops with
 * "KVM internal error ... emulation failure") the probe still exits after 2-5 s. Slower than TCG
 * by this much is not worth KVM's risks.
 */
export const KVM_USABLE_MS = 1_000;
const DEFAULT_QEMU = '/usr/bin/qemu-system-x86_64';

/** isa-debug-exit: a guest write of V to the port makes QEMU exit with status (V << 1) | 1. */
const DEBUG_EXIT_PORT = 0xf4;
const PROBE_VALUE = 0x2a;
export const PROBE_SUCCESS_EXIT = (PROBE_VALUE << 1) | 1; // 85

const MULTIBOOT_MAGIC = 0x1badb002;
/** Bit 16: the header carries load addresses (a flat binary, not ELF). */
const MULTIBOOT_AOUT_KLUDGE = 0x00010000;
const LOAD_ADDRESS = 0x100000;
const HEADER_SIZE = 32;

/**
 * The probe guest: a Multiboot (v1) header followed by 32-bit code that runs once the firmware
 * has loaded it at 1 MiB. Pure.
 */
export function probeKernelImage(): Uint8Array {
  const code = [
    0xb0, PROBE_VALUE, // mov al, 0x2a
    0xe6, DEBUG_EXIT_PORT, // out 0xf4, al   → QEMU exits with 85
    0xf4, // hlt                  (not reached)
    0xeb, 0xfd, // jmp back to hlt
  ];
  const image = new Uint8Array(HEADER_SIZE + code.length);
  const view = new DataView(image.buffer);
  const words = [
    MULTIBOOT_MAGIC,
    MULTIBOOT_AOUT_KLUDGE,
    (-(MULTIBOOT_MAGIC + MULTIBOOT_AOUT_KLUDGE)) >>> 0, // checksum: the three words sum to 0
    LOAD_ADDRESS, // header_addr: the header is the file's first byte
    LOAD_ADDRESS, // load_addr
    0, // load_end_addr: load the whole file
    0, // bss_end_addr: no bss
    LOAD_ADDRESS + HEADER_SIZE, // entry_addr: the code right after the header
  ];
  words.forEach((w, i) => view.setUint32(i * 4, w, true));
  image.set(code, HEADER_SIZE);
  return image;
}

/** QEMU arguments for the probe guest at `kernelPath`: KVM only (no TCG fallback), q35 like domains. Pure. */
export function kvmProbeArgs(kernelPath: string): string[] {
  return [
    '-accel', 'kvm',
    '-machine', 'q35',
    '-m', '16',
    '-nodefaults', '-no-user-config',
    '-display', 'none', '-serial', 'none', '-monitor', 'none',
    '-kernel', kernelPath,
    '-device', `isa-debug-exit,iobase=0x${DEBUG_EXIT_PORT.toString(16)},iosize=0x04`,
  ];
}

/** The decision a finished (or killed) probe guest stands for. Pure. */
export function interpretGuestRun(run: GuestRun, timeoutMs: number): KvmDecision {
  const ms = Math.round(run.elapsedMs);
  if (run.spawnError !== undefined) {
    return { domainType: 'qemu', reason: `cannot run QEMU for the KVM probe (${run.spawnError}); using TCG` };
  }
  if (run.exitCode === PROBE_SUCCESS_EXIT && !run.timedOut) {
    if (run.elapsedMs > KVM_USABLE_MS) {
      return {
        domainType: 'qemu',
        reason: `a KVM test guest took ${ms} ms to exit (a working KVM takes ~200 ms; over ${KVM_USABLE_MS} ms means KVM crawls here); using TCG`,
      };
    }
    return { domainType: 'kvm', reason: `a KVM test guest booted and exited in ${ms} ms` };
  }
  if (run.timedOut) {
    return {
      domainType: 'qemu',
      reason: `/dev/kvm is present but a KVM test guest did not finish within ${timeoutMs} ms (killed); using TCG`,
    };
  }
  const detail = lastLine(run.stderr);
  return {
    domainType: 'qemu',
    reason: `QEMU with -accel kvm exited with status ${run.exitCode ?? 'none'}${detail ? `: ${detail}` : ''}; using TCG`,
  };
}

function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0 && !/warning:/i.test(l));
  return (lines.at(-1) ?? '').slice(0, 300);
}

/**
 * `auto`: the bounded real probe; `on`: kvm (FailedPreconditionError when the device is missing
 * or unusable); `off`: qemu.
 */
export async function probeKvm(mode: KvmMode, options: ProbeKvmOptions = {}): Promise<KvmDecision> {
  const runner = options.runner ?? new ProcessKvmProbeRunner();
  const device = options.devicePath ?? DEFAULT_KVM_DEVICE;
  const timeoutMs = options.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const logger = options.logger ?? silentLogger;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 60_000) {
    throw new InvalidArgumentError(`KVM probe timeout ${timeoutMs} ms must be an integer in 100..60000`);
  }
  switch (mode) {
    case 'off':
      return { domainType: 'qemu', reason: 'KVM is turned off (kvm=off); using TCG' };
    case 'on': {
      const check = await runner.checkDevice(device);
      if (!check.ok) throw new FailedPreconditionError(`kvm=on but ${check.reason}`);
      return { domainType: 'kvm', reason: `KVM is turned on (kvm=on) and ${device} is usable` };
    }
    case 'auto': {
      const check = await runner.checkDevice(device);
      if (!check.ok) return { domainType: 'qemu', reason: `${check.reason}; using TCG` };
      const run = await runner.runGuest(options.qemuPath ?? DEFAULT_QEMU, probeKernelImage(), timeoutMs);
      const decision = interpretGuestRun(run, timeoutMs);
      logger.info({ ...decision, elapsedMs: Math.round(run.elapsedMs), exitCode: run.exitCode }, 'KVM probe');
      return decision;
    }
    default:
      throw new InvalidArgumentError(`KVM mode ${JSON.stringify(mode)} is not auto, on or off`);
  }
}

const STDERR_LIMIT = 4096;

/** The real side effects: stat/open of the device, QEMU as a child process killed by pid. */
export class ProcessKvmProbeRunner implements KvmProbeRunner {
  async checkDevice(path: string): Promise<DeviceCheck> {
    try {
      const st = await stat(path);
      if (!st.isCharacterDevice()) return { ok: false, missing: false, reason: `${path} is not a character device` };
    } catch (err) {
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      return { ok: false, missing, reason: missing ? `${path} does not exist` : `cannot stat ${path}: ${errorText(err)}` };
    }
    try {
      const fh = await open(path, constants.O_RDWR);
      await fh.close();
      return { ok: true };
    } catch (err) {
      return { ok: false, missing: false, reason: `cannot open ${path}: ${errorText(err)}` };
    }
  }

  async runGuest(qemuPath: string, kernel: Uint8Array, timeoutMs: number): Promise<GuestRun> {
    const dir = await mkdtemp(join(tmpdir(), 'vmlet-kvm-probe-'));
    try {
      const kernelPath = join(dir, 'probe.bin');
      await writeFile(kernelPath, kernel, { mode: 0o600 });
      return await runBounded(qemuPath, kvmProbeArgs(kernelPath), timeoutMs);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

function runBounded(file: string, args: string[], timeoutMs: number): Promise<GuestRun> {
  return new Promise((resolve) => {
    const started = performance.now();
    let stderr = '';
    let timedOut = false;
    let spawnError: string | undefined;
    const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-STDERR_LIMIT);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      // ChildProcess.kill signals exactly this child's pid.
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      spawnError = errorText(err);
    });
    // 'close' follows both a normal exit and a failed spawn, after stderr has drained.
    child.once('close', (code) => {
      clearTimeout(timer);
      const run: GuestRun = { exitCode: code, timedOut, stderr, elapsedMs: performance.now() - started };
      if (spawnError !== undefined) run.spawnError = spawnError;
      resolve(run);
    });
  });
}
