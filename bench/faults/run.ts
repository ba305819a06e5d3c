/**
 * `npm run bench -- faults [--cycles 200] [--warm-every 4] [--json PATH]`: faulted pod cycles
 * (test/helpers/fault_cycles.ts) round-robin over every fault point of src/fault_points.ts, every
 * `--warm-every`-th cycle with a warm VM at a warm-VM point. Prints each cycle, then the totals:
 * cycles whose point was not reached, whose runtime was not healthy after the restart, and every
 * leftover by kind; serve's fds and serve+netd RSS after each cycle's cleanup (first, last, max),
 * so a leak that grows per fault shows. Exit code 1 when anything leaked or a cycle failed.
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { FAULT_POINTS } from '../../src/fault_points.js';
import { REPO_ROOT } from '../../test/helpers/daemon.js';
import { ensureLibvirtd } from '../../test/helpers/libvirtd.js';
import { clearStaleTestSubnet } from '../../test/helpers/e2e.js';
import { createFaultRig, runFaultCycle, WARM_FAULT_POINTS, type CycleResult } from '../../test/helpers/fault_cycles.js';
import { benchPrologue, defaultJsonPath, intOption, parseBenchArgs, subnetPrefixOption } from '../lib/options.js';

const USAGE = 'usage: npm run bench -- faults [--cycles N (default 200)] [--warm-every N (default 4; 0: cold only)] [--subnet-prefix 198.18.239] [--json PATH]\n';

export async function runFaultsBench(argv: readonly string[]): Promise<number> {
  const opts = benchPrologue(() => {
    const args = parseBenchArgs(argv, { cycles: 'string', 'warm-every': 'string', 'subnet-prefix': 'string', json: 'string' });
    if (!args) return undefined;
    return {
      cycles: intOption(args.str('cycles'), 'cycles', 200, 1, 10_000),
      warmEvery: intOption(args.str('warm-every'), 'warm-every', 4, 0, 1000),
      prefix: subnetPrefixOption(args.str('subnet-prefix'), '198.18.239'),
      json: args.str('json'),
    };
  }, USAGE, 'faults bench');
  if (typeof opts === 'number') return opts;
  const { cycles, warmEvery, prefix } = opts;
  const jsonPath = opts.json ?? defaultJsonPath(REPO_ROOT, 'faults', new Date());

  await ensureLibvirtd();
  clearStaleTestSubnet(prefix);
  const rig = await createFaultRig(prefix);
  const results: CycleResult[] = [];
  const started = Date.now();
  let cold = 0;
  let warm = 0;
  try {
    for (let i = 0; i < cycles; i++) {
      const useWarm = warmEvery > 0 && i % warmEvery === warmEvery - 1;
      const point = useWarm ? WARM_FAULT_POINTS[warm++ % WARM_FAULT_POINTS.length]! : FAULT_POINTS[cold++ % FAULT_POINTS.length]!;
      const r = await runFaultCycle(rig, point, { warm: useWarm, index: i });
      results.push(r);
      const left = Object.entries(r.leftovers).map(([k, v]) => `${k}=${v.length}`).join(' ') || 'none';
      process.stdout.write(`${String(i + 1).padStart(4)} ${useWarm ? 'warm' : 'cold'} ${point.padEnd(36)} broke ${(r.brokenCall ?? '-').padEnd(16)} ` +
        `${r.faulted ? 'faulted' : 'NOT REACHED'} ${r.healthy ? 'healthy' : 'UNHEALTHY'} left ${left}  fds ${r.serveFds}  rss ${r.rssKiB} KiB  ${r.ms} ms\n`);
    }
  } finally {
    await rig.close();
  }
  const leaks: Record<string, number> = {};
  for (const r of results) for (const [k, v] of Object.entries(r.leftovers)) leaks[k] = (leaks[k] ?? 0) + v.length;
  const fds = results.map((r) => r.serveFds);
  const rss = results.map((r) => r.rssKiB);
  const summary = {
    cycles: results.length,
    warmCycles: results.filter((r) => r.warm).length,
    notReached: results.filter((r) => !r.faulted).length,
    unhealthy: results.filter((r) => !r.healthy).length,
    leaks,
    serveFds: { first: fds[0], last: fds.at(-1), max: Math.max(...fds) },
    rssKiB: { first: rss[0], last: rss.at(-1), max: Math.max(...rss) },
    minutes: +((Date.now() - started) / 60_000).toFixed(1),
  };
  process.stdout.write(`\n${JSON.stringify(summary, null, 2)}\n`);
  mkdirSync(dirname(jsonPath), { recursive: true });
  writeFileSync(jsonPath, JSON.stringify({ summary, results }, null, 2));
  process.stdout.write(`results: ${jsonPath}\n`);
  return summary.notReached + summary.unhealthy + Object.keys(leaks).length === 0 ? 0 : 1;
}
