/**
 * A domain's QEMU process, seen from /proc: found through libvirt's pid file and checked against
 * its command line, and watched until it has exited.
 *
 * Why: libvirt answers a destroy (and reports a domain stopped after QEMU quits on its own) only
 * once QEMU's pid is gone from the process table: it polls kill(pid, 0) every 200 ms
 * (virProcessKillPainfully). QEMU runs daemonized, a child of PID 1, so its pid is gone only when
 * PID 1 reaps it. A PID 1 that reaps at once (systemd, tini) makes that ~200 ms; the PID 1 of the
 * project's machines reaps orphans on a 1 s tick, so QEMU stays a zombie for 1-2 s and every
 * destroy takes ~1.8 s, though QEMU is dead ~15 ms after the SIGTERM (docs/stop-path.md has the
 * measurements). A zombie holds nothing of the VM (memory, fds, TAPs, disks, its netns are
 * released at exit), so "QEMU has exited" is when the VM is gone; libvirt's bookkeeping follows.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** One QEMU process: its pid and its start time (field 22 of /proc/<pid>/stat), against pid reuse. */
export interface QemuProcess {
  pid: number;
  startTime: string;
}

/** What vmlet needs of a domain's QEMU; a fake in tests. */
export interface QemuProcesses {
  /** The running QEMU of domain `domainName`, or undefined when there is none (or it cannot be told). */
  find(domainName: string): Promise<QemuProcess | undefined>;
  /** Resolves true once the process has exited (zombie or gone), false after `timeoutMs` or an abort. */
  waitForExit(proc: QemuProcess, timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
}

/** State and start time from a /proc/<pid>/stat line; undefined when it is not one. Pure. */
export function parseProcStat(text: string): { state: string; startTime: string } | undefined {
  // The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const rest = text.slice(close + 2).trim().split(/\s+/);
  // rest[0] is field 3 (state); field 22 (starttime) is rest[19].
  if (rest.length < 20 || !/^[A-Za-z]$/.test(rest[0]!) || !/^\d+$/.test(rest[19]!)) return undefined;
  return { state: rest[0]!, startTime: rest[19]! };
}

/** Whether a NUL-separated command line is QEMU's for domain `name` (libvirt passes `-name guest=<name>,…`). Pure. */
export function isQemuOf(cmdline: string, name: string): boolean {
  const args = cmdline.split('\0');
  const at = args.indexOf('-name');
  if (at < 0) return false;
  const value = args[at + 1] ?? '';
  // QEMU's option syntax doubles a comma inside a value; domain names vmlet makes have none.
  return value.split(',')[0] === `guest=${name}`;
}

/** Exited: a zombie (Z), dead (X), gone, or another process on the same pid. Pure. */
export function hasExited(stat: { state: string; startTime: string } | undefined, proc: QemuProcess): boolean {
  return stat === undefined || stat.state === 'Z' || stat.state === 'X' || stat.startTime !== proc.startTime;
}

const POLL_MS = 5;

/** The real thing: libvirt's pid files in `runDir` (the QEMU driver's, /run/libvirt/qemu) and /proc. */
export class ProcQemuProcesses implements QemuProcesses {
  constructor(
    private readonly runDir: string,
    private readonly procDir = '/proc',
  ) {}

  async find(domainName: string): Promise<QemuProcess | undefined> {
    if (domainName.includes('/') || domainName.startsWith('.')) return undefined;
    const pidText = await readFile(join(this.runDir, `${domainName}.pid`), 'utf8').catch(() => undefined);
    const pid = Number(pidText?.trim());
    if (!Number.isSafeInteger(pid) || pid <= 1) return undefined;
    const [cmdline, stat] = await Promise.all([
      readFile(join(this.procDir, String(pid), 'cmdline'), 'latin1').catch(() => undefined),
      this.stat(pid),
    ]);
    if (cmdline === undefined || stat === undefined || !isQemuOf(cmdline, domainName)) return undefined;
    const proc = { pid, startTime: stat.startTime };
    return hasExited(stat, proc) ? undefined : proc;
  }

  async waitForExit(proc: QemuProcess, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (hasExited(await this.stat(proc.pid), proc)) return true;
      if (signal?.aborted || performance.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  private async stat(pid: number): Promise<{ state: string; startTime: string } | undefined> {
    const text = await readFile(join(this.procDir, String(pid), 'stat'), 'latin1').catch(() => undefined);
    return text === undefined ? undefined : parseProcStat(text);
  }
}
