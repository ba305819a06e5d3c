/**
 * Readers of a process's resources from /proc, shared by the fault-cycle tests and the soak bench.
 * Each answers undefined when the process is gone, so a caller decides what a vanished one counts as.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Open file descriptors of `pid`. */
export function openFdCount(pid: number): number | undefined {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return undefined;
  }
}

/** Resident set size of `pid` in KiB. */
export function rssKiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** `root` and all its descendants (breadth first), as far as they still exist. */
export function processTree(root: number): number[] {
  const pids = [root];
  for (let i = 0; i < pids.length; i++) {
    try {
      const children = readFileSync(`/proc/${pids[i]}/task/${pids[i]}/children`, 'utf8').trim();
      if (children) pids.push(...children.split(/\s+/).map(Number));
    } catch {
      /* gone */
    }
  }
  return pids;
}
