/** Facts about processes and the machine, read from /proc and node:os. */
import { readFile, readdir } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import os from 'node:os';
import { performance } from 'node:perf_hooks';

const execFileP = promisify(execFile);

export interface MemoryReading {
  pid: number;
  /** Resident set size now, in KiB (VmRSS). */
  rssKiB: number;
  /** Peak resident set size so far, in KiB (VmHWM). */
  hwmKiB: number;
}

/** Reads a `Key:   123 kB` field of /proc/<pid>/status text. Pure. */
export function statusFieldKiB(status: string, key: string): number | undefined {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(status);
  return m ? Number(m[1]) : undefined;
}

/** VmRSS and VmHWM of `pid`; undefined when the process is gone. */
export async function readMemory(pid: number): Promise<MemoryReading | undefined> {
  let status: string;
  try {
    status = await readFile(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const rssKiB = statusFieldKiB(status, 'VmRSS');
  const hwmKiB = statusFieldKiB(status, 'VmHWM');
  if (rssKiB === undefined || hwmKiB === undefined) return undefined;
  return { pid, rssKiB, hwmKiB };
}

/** The parent pid in /proc/<pid>/stat text. The command name may hold spaces and ')', so parse after the last ')'. Pure. */
export function parentPidFromStat(stat: string): number | undefined {
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ppid = Number(rest[1]);
  return Number.isInteger(ppid) ? ppid : undefined;
}

/** Children of `parent` whose command line contains every word of `argvWords`. */
export async function findChildren(parent: number, argvWords: readonly string[]): Promise<number[]> {
  const out: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      if (parentPidFromStat(stat) !== parent) continue;
      const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0');
      if (argvWords.every((w) => argv.includes(w))) out.push(Number(entry));
    } catch {
      // The process went away while we looked.
    }
  }
  return out;
}

export interface MachineInfo {
  date: string;
  hostname: string;
  nproc: number;
  cpuModel: string;
  memTotalMiB: number;
  kernel: string;
  node: string;
  platform: string;
  /** Filesystem type under the temp dir, where the bench's state dirs (and their fsyncs) live. */
  tmpFsType: string;
  cniPluginsVersion: string;
  iproute2Version: string;
}

async function firstLine(file: string, args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await execFileP(file, args, { timeout: 5000 });
    return (stdout || stderr).trim().split('\n')[0] ?? '';
  } catch (err) {
    return `unknown (${(err as Error).message.split('\n')[0]})`;
  }
}

export async function machineInfo(tmpDir: string): Promise<MachineInfo> {
  return {
    date: new Date().toISOString(),
    hostname: os.hostname(),
    nproc: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memTotalMiB: Math.round(os.totalmem() / 2 ** 20),
    kernel: `${os.type()} ${os.release()} ${os.version()}`,
    node: process.version,
    platform: `${process.platform}/${process.arch}`,
    tmpFsType: await firstLine('stat', ['-f', '-c', '%T', tmpDir]),
    // The plugins print "version unknown" themselves; Debian's package version is what identifies them.
    cniPluginsVersion: await firstLine('dpkg-query', ['-W', '-f', '${Version}', 'containernetworking-plugins']),
    iproute2Version: await firstLine('ip', ['-V']),
  };
}

/** Jiffies the whole machine spent busy (user, nice, system, irq, softirq, steal) from /proc/stat text. Pure. */
export function machineBusyTicks(procStat: string): number {
  const line = procStat.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) throw new Error('/proc/stat has no cpu line');
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already inside user/nice)
  return f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + (f[7] ?? 0);
}

/** utime + stime + cutime + cstime of a process (itself and its reaped children) from /proc/<pid>/stat text. Pure. */
export function processTicks(stat: string): number {
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the command: state(3) ppid(4) … utime(14) stime(15) cutime(16) cstime(17); rest[0] is field 3.
  return Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]);
}

export interface CpuSnapshot {
  atMs: number;
  machineTicks: number;
  ownTicks: number;
}

/** The machine's busy time and that of `pids` (with their reaped children), now. */
export async function cpuSnapshot(pids: readonly number[]): Promise<CpuSnapshot> {
  const machineTicks = machineBusyTicks(await readFile('/proc/stat', 'utf8'));
  let ownTicks = 0;
  for (const pid of pids) {
    try {
      ownTicks += processTicks(await readFile(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      // Gone: its time is in its parent's cutime if the parent is listed.
    }
  }
  return { atMs: performance.now(), machineTicks, ownTicks };
}

/** USER_HZ: the unit of /proc/stat and /proc/<pid>/stat times (100 on Linux/x86). */
export const CLOCK_TICKS_PER_SECOND = 100;

/**
 * Average number of CPUs kept busy between two snapshots by everything except the listed
 * processes and their reaped children: other users of the machine (and kernel work). Children
 * still running at the second snapshot are not counted yet, so this errs towards "busy". Pure.
 */
export function otherCpuCores(a: CpuSnapshot, b: CpuSnapshot): number {
  const seconds = (b.atMs - a.atMs) / 1000;
  if (seconds <= 0) return NaN;
  return (b.machineTicks - a.machineTicks - (b.ownTicks - a.ownTicks)) / CLOCK_TICKS_PER_SECOND / seconds;
}
