/**
 * The host facts and last-resort deletes the VM bench needs around the daemon: libvirt domains
 * (through virsh), QEMU processes (from /proc), CPU time of given processes, tool versions.
 * Only names the bench made are ever deleted.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { machineBusyTicks, processTicks } from '../lib/proc.js';

const execFileP = promisify(execFile);
const VIRSH_TIMEOUT_MS = 60_000;

/** The prefix of every domain vmlet defines (src/container/service.ts DOMAIN_PREFIX). */
export const VMLET_DOMAIN_PREFIX = 'vmlet-';

/** Every libvirt domain, running or not. */
export async function definedDomains(uri: string): Promise<string[]> {
  const { stdout } = await execFileP('virsh', ['-q', '-c', uri, 'list', '--all', '--name'], { timeout: VIRSH_TIMEOUT_MS });
  return stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((n) => n !== '');
}

/** Warm VMs vmlet keeps (src/container/warm/pool.ts): paused domains named vmlet-warm-…. */
export const WARM_DOMAIN_PREFIX = 'vmlet-warm-';

/**
 * Paused domains whose name starts with `vmlet-warm-`: idle (or just claimed) warm VMs; with
 * `owner`, only those of the vmlet instance with that owner id (several share the host).
 */
export async function pausedWarmDomains(uri: string, owner?: string): Promise<string[]> {
  const { stdout } = await execFileP('virsh', ['-q', '-c', uri, 'list', '--state-paused', '--name'], { timeout: VIRSH_TIMEOUT_MS });
  const names = stdout.split('\n').map((l) => l.trim()).filter((n) => n.startsWith(WARM_DOMAIN_PREFIX));
  if (owner === undefined) return names;
  const owners = await Promise.all(names.map((n) => domainOwner(uri, n)));
  return names.filter((_, i) => owners[i] === owner);
}

/**
 * The owner id in a vmlet domain's metadata (src/store/owner.ts), or undefined (none, or the
 * domain is gone). A vmlet daemon's reconcile removes only domains carrying its own owner id.
 */
export async function domainOwner(uri: string, name: string): Promise<string | undefined> {
  try {
    const { stdout } = await execFileP('virsh', ['-q', '-c', uri, 'dumpxml', name], { timeout: VIRSH_TIMEOUT_MS });
    return /<vmlet:owner id="([0-9a-f]+)"/.exec(stdout)?.[1];
  } catch {
    return undefined;
  }
}

/** Every libvirt domain (running or not) whose name starts with `vmlet-`. */
export async function vmletDomains(uri: string): Promise<string[]> {
  return (await definedDomains(uri)).filter((n) => n.startsWith(VMLET_DOMAIN_PREFIX));
}

/** Destroys (if running) and undefines a domain the bench made (the caller checks that); a domain already gone is fine. */
export async function destroyAndUndefine(uri: string, name: string): Promise<void> {
  if (!/^[A-Za-z0-9-]+$/.test(name)) throw new Error(`refusing to remove domain ${JSON.stringify(name)}`);
  await execFileP('virsh', ['-c', uri, 'destroy', name], { timeout: VIRSH_TIMEOUT_MS }).catch(() => undefined);
  try {
    await execFileP('virsh', ['-c', uri, 'undefine', name, '--managed-save', '--snapshots-metadata'], { timeout: VIRSH_TIMEOUT_MS });
  } catch (err) {
    if (!/failed to get domain|not found/i.test(String((err as { stderr?: string }).stderr ?? err))) throw err;
  }
}

/** Pids of QEMU processes whose command line names one of `domainNames`. */
export async function qemuPidsOf(domainNames: Iterable<string>): Promise<Map<string, number>> {
  const names = [...domainNames];
  const out = new Map<string, number>();
  if (names.length === 0) return out;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!(await readFile(`/proc/${entry}/comm`, 'utf8')).startsWith('qemu')) continue;
      const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0');
      // libvirt passes `-name guest=<name>,debug-threads=on`.
      const guest = argv.map((a) => /^guest=([^,]+)/.exec(a)?.[1]).find((g) => g !== undefined);
      if (guest !== undefined && names.includes(guest)) out.set(guest, Number(entry));
    } catch {
      // Gone while we looked.
    }
  }
  return out;
}

export interface CpuReading {
  machineTicks: number;
  ownTicks: number;
  guestTicks: number;
  atMs: number;
}

async function ticksOf(pids: readonly number[]): Promise<number> {
  let sum = 0;
  for (const pid of pids) {
    try {
      sum += processTicks(await readFile(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      // Gone: a guest removed in between no longer counts (its time is lost, not misattributed).
    }
  }
  return sum;
}

/** Machine busy time, and that of `own` pids (bench, serve, netd) and `guests` (the bench's QEMUs). */
export async function cpuReading(own: readonly number[], guests: readonly number[], nowMs: number): Promise<CpuReading> {
  return {
    machineTicks: machineBusyTicks(await readFile('/proc/stat', 'utf8')),
    ownTicks: await ticksOf(own),
    guestTicks: await ticksOf(guests),
    atMs: nowMs,
  };
}

const TICKS_PER_SECOND = 100;

/** CPUs kept busy between two readings by others, and by the guests. Pure. */
export function cpuBetween(a: CpuReading, b: CpuReading): { otherCores: number; guestCores: number } {
  const seconds = (b.atMs - a.atMs) / 1000;
  if (seconds <= 0) return { otherCores: NaN, guestCores: NaN };
  const machine = b.machineTicks - a.machineTicks;
  const own = b.ownTicks - a.ownTicks;
  const guests = b.guestTicks - a.guestTicks;
  return { otherCores: (machine - own - guests) / TICKS_PER_SECOND / seconds, guestCores: guests / TICKS_PER_SECOND / seconds };
}

/** First line a tool prints for its version, or "unknown (…)". */
export async function toolVersion(file: string, args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await execFileP(file, args, { timeout: 10_000 });
    return (stdout || stderr).trim().split('\n')[0] ?? '';
  } catch (err) {
    return `unknown (${(err as Error).message.split('\n')[0]})`;
  }
}
