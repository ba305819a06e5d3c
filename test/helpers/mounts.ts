/** Mount points a test's temp dir may still hold when the test ends (a daemon's volumes, an overlay). */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/**
 * Lazily unmounts everything mounted at or below `dir`, deepest first: removing the dir
 * recursively would otherwise fail with EBUSY, or reach through a bind mount into the files of
 * the directory it shows.
 */
export function unmountUnder(dir: string): void {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
  for (const m of mounts.sort((a, b) => b.length - a.length)) {
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      /* already gone */
    }
  }
}
