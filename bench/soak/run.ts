/**
 * `npm run bench -- soak [--minutes 30] [--sample-every 10]`: one `vmlet serve` with two VM pods
 * running throughout, and pod cycles (RunPodSandbox → CreateContainer → StartContainer →
 * StopPodSandbox → RemovePodSandbox) back to back for the given time. Every `--sample-every`
 * cycles it samples serve's and netd's open fds and RSS. The verdict compares the first and the
 * last fifth of the run: the most fds seen in the last fifth may exceed the most in the first by
 * one at most (a sample can fall while a socket of the last cycle is still closing; a leak grows
 * with the cycles), and the mean RSS may grow at most 10% (V8's heap settles in the first minutes). Leftovers on the host are counted at the end, after the two VMs are removed too.
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { REPO_ROOT, startTestDaemon, type TestDaemon } from '../../test/helpers/daemon.js';
import { ensureLibvirtd } from '../../test/helpers/libvirtd.js';
import { clearStaleTestSubnet } from '../../test/helpers/e2e.js';
import { openFdCount, rssKiB } from '../../test/helpers/proc_readers.js';
import { countLeftovers, createFaultRig, type FaultRig } from '../../test/helpers/fault_cycles.js';
import { benchPrologue, defaultJsonPath, intOption, parseBenchArgs, subnetPrefixOption } from '../lib/options.js';

const USAGE = 'usage: npm run bench -- soak [--minutes N (default 30)] [--sample-every N cycles (default 10)] [--subnet-prefix 198.19.37] [--json PATH]\n';

interface Sample {
  atS: number;
  cycles: number;
  serveFds: number;
  netdFds: number;
  serveRssKiB: number;
  netdRssKiB: number;
}

/** netd is serve's child running `main.ts netd`. */
function netdPid(servePid: number): number {
  const children = readFileSync(`/proc/${servePid}/task/${servePid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  const netd = children.find((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('netd');
    } catch {
      return false;
    }
  });
  if (netd === undefined) throw new Error('no netd child of serve');
  return netd;
}

async function podCycle(d: TestDaemon, rig: FaultRig, name: string, keep = false): Promise<string> {
  const config = { metadata: { name, namespace: 'soak', uid: `uid-${name}`, attempt: 0 }, hostname: name, linux: {} };
  const sandbox = (await d.runtime.RunPodSandbox!({ config })).pod_sandbox_id as string;
  const container = (await d.runtime.CreateContainer!({ pod_sandbox_id: sandbox, config: { metadata: { name: 'vm', attempt: 0 }, image: { image: rig.imageRef } }, sandbox_config: config })).container_id as string;
  await d.runtime.StartContainer!({ container_id: container });
  if (keep) return sandbox;
  await d.runtime.StopPodSandbox!({ pod_sandbox_id: sandbox });
  await d.runtime.RemovePodSandbox!({ pod_sandbox_id: sandbox });
  return sandbox;
}

const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

export async function runSoakBench(argv: readonly string[]): Promise<number> {
  const opts = benchPrologue(() => {
    const args = parseBenchArgs(argv, { minutes: 'string', 'sample-every': 'string', 'subnet-prefix': 'string', json: 'string' });
    if (!args) return undefined;
    return {
      minutes: intOption(args.str('minutes'), 'minutes', 30, 1, 24 * 60),
      sampleEvery: intOption(args.str('sample-every'), 'sample-every', 10, 1, 10_000),
      prefix: subnetPrefixOption(args.str('subnet-prefix'), '198.19.37'),
      json: args.str('json'),
    };
  }, USAGE, 'soak bench');
  if (typeof opts === 'number') return opts;
  const { minutes, sampleEvery, prefix } = opts;
  const jsonPath = opts.json ?? defaultJsonPath(REPO_ROOT, 'soak', new Date());

  await ensureLibvirtd();
  clearStaleTestSubnet(prefix);
  const rig = await createFaultRig(prefix);
  const samples: Sample[] = [];
  const ids = new Set<string>();
  let cycles = 0;
  let failures = 0;
  const started = Date.now();
  const d = await startTestDaemon({ dir: rig.dir, args: ['--kvm', 'off'] });
  try {
    const servePid = d.child.pid!;
    const netd = netdPid(servePid);
    for (const n of ['soak-keep-a', 'soak-keep-b']) ids.add(await podCycle(d, rig, `${n}-${rig.tag}`, true));
    const sample = () => {
      const s: Sample = { atS: Math.round((Date.now() - started) / 1000), cycles, serveFds: openFdCount(servePid) ?? -1, netdFds: openFdCount(netd) ?? -1, serveRssKiB: rssKiB(servePid) ?? -1, netdRssKiB: rssKiB(netd) ?? -1 };
      samples.push(s);
      process.stdout.write(`${String(s.atS).padStart(6)} s  cycles ${String(cycles).padStart(5)}  serve fds ${s.serveFds} rss ${s.serveRssKiB} KiB  netd fds ${s.netdFds} rss ${s.netdRssKiB} KiB  failures ${failures}\n`);
    };
    sample();
    const end = started + minutes * 60_000;
    while (Date.now() < end) {
      try {
        ids.add(await podCycle(d, rig, `soak-${rig.tag}-${cycles}`));
      } catch (err) {
        failures++;
        process.stderr.write(`cycle ${cycles}: ${(err as Error).message}\n`);
      }
      cycles++;
      if (cycles % sampleEvery === 0) sample();
    }
    sample();
    if (netdPid(servePid) !== netd) throw new Error('netd was restarted during the soak');
    for (const s of (await d.runtime.ListPodSandbox!({})).items) {
      await d.runtime.StopPodSandbox!({ pod_sandbox_id: s.id });
      await d.runtime.RemovePodSandbox!({ pod_sandbox_id: s.id });
    }
  } finally {
    for (const m of d.output().matchAll(/\b[0-9a-f]{64}\b/g)) ids.add(m[0]);
    await d.stop();
  }
  const leftovers = await countLeftovers(rig, ids);
  await rig.close();

  const fifth = Math.max(1, Math.floor(samples.length / 5));
  const first = samples.slice(0, fifth);
  const last = samples.slice(-fifth);
  const summary = {
    minutes,
    cycles,
    failures,
    cyclesPerMinute: +(cycles / ((Date.now() - started) / 60_000)).toFixed(1),
    serveFds: { first: +avg(first.map((s) => s.serveFds)).toFixed(2), last: +avg(last.map((s) => s.serveFds)).toFixed(2), firstMax: Math.max(...first.map((s) => s.serveFds)), lastMax: Math.max(...last.map((s) => s.serveFds)) },
    netdFds: { first: +avg(first.map((s) => s.netdFds)).toFixed(2), last: +avg(last.map((s) => s.netdFds)).toFixed(2), firstMax: Math.max(...first.map((s) => s.netdFds)), lastMax: Math.max(...last.map((s) => s.netdFds)) },
    serveRssKiB: { first: Math.round(avg(first.map((s) => s.serveRssKiB))), last: Math.round(avg(last.map((s) => s.serveRssKiB))), max: Math.max(...samples.map((s) => s.serveRssKiB)) },
    netdRssKiB: { first: Math.round(avg(first.map((s) => s.netdRssKiB))), last: Math.round(avg(last.map((s) => s.netdRssKiB))), max: Math.max(...samples.map((s) => s.netdRssKiB)) },
    leftovers,
  };
  const fdsFlat = (pick: (s: Sample) => number) => Math.max(...last.map(pick)) <= Math.max(...first.map(pick)) + 1;
  const flat = fdsFlat((s) => s.serveFds) && fdsFlat((s) => s.netdFds) &&
    summary.serveRssKiB.last <= summary.serveRssKiB.first * 1.1 && summary.netdRssKiB.last <= summary.netdRssKiB.first * 1.1;
  process.stdout.write(`\n${JSON.stringify(summary, null, 2)}\nverdict: fds and RSS ${flat ? 'flat (PASS)' : 'GREW (FAIL)'}, failures ${failures}, leftovers ${Object.keys(leftovers).length === 0 ? 'none' : JSON.stringify(leftovers)}\n`);
  mkdirSync(dirname(jsonPath), { recursive: true });
  writeFileSync(jsonPath, JSON.stringify({ summary, samples }, null, 2));
  process.stdout.write(`results: ${jsonPath}\n`);
  return flat && failures === 0 && Object.keys(leftovers).length === 0 ? 0 : 1;
}
