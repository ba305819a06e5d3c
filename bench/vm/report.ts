/** The printed report of a VM bench run. Pure: a result in, text out. */
import { formatTable, mib, ms } from '../lib/table.js';
import { median, summarize } from '../lib/stats.js';
import { growthVerdict, PER_VM_TARGET_KIB, rssGrowth, type Growth, type RssPoint } from './memory.js';
import { SEPARATOR, UNTIMED } from './span_profile.js';
import { LIBVIRT_START_SPAN } from './span_record.js';
import type { MemorySample, PodSample, VmBenchResult } from './result.js';
import { mountCaseRows } from './mounts.js';
import { burstRows } from './bursts.js';
import { scaleRows, type ScaleResult } from './scale.js';

/** vmlet's own share of a pod start (Run + Create + Start round trips) must stay under this. */
export const VMLET_SHARE_TARGET_MS = 150;

export function measuredPods(result: VmBenchResult): PodSample[] {
  return result.pods.filter((p) => !p.warmup && p.error === undefined);
}

/** PASS when every measured pod's share is under the target. */
export function shareVerdict(pods: readonly PodSample[]): 'PASS' | 'MISS' | '-' {
  const shares = pods.map((p) => p.vmletMs).filter((v): v is number => v !== undefined);
  if (shares.length === 0) return '-';
  return shares.every((v) => v < VMLET_SHARE_TARGET_MS) ? 'PASS' : 'MISS';
}

function values(pods: readonly PodSample[], pick: (p: PodSample) => number | undefined): number[] {
  return pods.map(pick).filter((v): v is number => v !== undefined && Number.isFinite(v));
}

function summaryRow(label: string, samples: readonly number[], note = ''): string[] {
  const s = summarize(samples);
  return [label, String(s.n), ms(s.median), ms(s.p95), ms(s.max), note];
}

function mainTable(result: VmBenchResult): string {
  const pods = measuredPods(result);
  const share = values(pods, (p) => p.vmletMs);
  const verdict = shareVerdict(pods);
  return formatTable(
    ['per pod', 'n', 'median ms', 'p95 ms', 'max ms', ''],
    [
      summaryRow('RunPodSandbox', values(pods, (p) => p.runMs)),
      summaryRow('CreateContainer (overlay, seed, define or plug)', values(pods, (p) => p.createMs)),
      summaryRow('StartContainer (libvirt start or resume)', values(pods, (p) => p.startMs)),
      summaryRow("vmlet's share (Run + Create + Start)", share, `target < ${VMLET_SHARE_TARGET_MS} ms per pod: ${verdict}`),
      summaryRow('guest boot (Start answered -> DHCP ACK)', values(pods, (p) => p.bootMs)),
      summaryRow('total (Run sent -> DHCP ACK)', values(pods, (p) => p.totalMs)),
    ],
    ['left', 'right', 'right', 'right', 'right', 'left'],
  );
}

/** How many measured pods got a warm VM, with the pool size and the untimed wait for one. */
function warmLine(result: VmBenchResult): string {
  const pods = measuredPods(result).filter((p) => p.vmletMs !== undefined);
  const warm = pods.filter((p) => p.warm).length;
  const waits = values(pods, (p) => p.warmWaitMs);
  const wait = waits.length > 0 ? `; untimed wait before Run for an idle warm VM: median ${ms(median(waits))}, max ${ms(Math.max(...waits))} ms` : '';
  const block = result.options.blockVolume ? '; each pod with one 64 MiB block volume (--block-volume)' : '';
  return `warm VMs (--vm-warm-pool ${result.options.warmPool}): ${warm} of ${pods.length} measured pod(s) adopted one (Start = resume), ${pods.length - warm} started cold${wait}${block}`;
}

function warmupLine(result: VmBenchResult): string {
  const w = result.pods.find((p) => p.warmup);
  if (!w) return 'warm-up pod: none';
  if (w.error) return `warm-up pod: failed: ${w.error}`;
  return `warm-up pod (not in the stats): Run ${ms(w.runMs ?? NaN)}, Create ${ms(w.createMs ?? NaN)}, Start ${ms(w.startMs ?? NaN)}, share ${ms(w.vmletMs ?? NaN)}, boot ${ms(w.bootMs ?? NaN)} ms`;
}

function signalLines(result: VmBenchResult): string[] {
  const pods = measuredPods(result);
  const counterLag = values(pods, (p) => (p.ackCounterSeenAt !== undefined && p.ack ? p.ackCounterSeenAt - p.ack.atMs : undefined));
  const consoleLag = values(pods, (p) => (p.console?.ipAtMs !== undefined && p.ack ? p.console.ipAtMs - p.ack.atMs : undefined));
  const toInit = values(pods, (p) => (p.console?.bootAtMs !== undefined && p.startReturnedAt !== undefined ? p.console.bootAtMs - p.startReturnedAt : undefined));
  const initToAck = values(pods, (p) => (p.console?.bootAtMs !== undefined && p.ack ? p.ack.atMs - p.console.bootAtMs : undefined));
  return [
    `DHCP ACK time: netd's own "sent DHCP reply" (ack) debug line, logged when the reply left its socket (ms resolution).`,
    `  cross-checks: netd's ACK counter (PodSandboxStatus verbose, polled) showed it ${ms(median(counterLag))} ms later (median);`,
    `  the guest's "VMLET-GUEST ip eth0" console line carries a CRI time ${ms(median(consoleLag))} ms after the ACK (median; pump read time).`,
    `guest boot split (console pump times): Start answered -> guest /init running ${ms(median(toInit))} ms (firmware + kernel), /init -> ACK ${ms(median(initToAck))} ms (modules, udhcpc).`,
  ];
}

function point(m: MemorySample): RssPoint {
  return { runningVms: m.runningVms, serveKiB: m.serve?.rssKiB, netdKiB: m.netd?.rssKiB };
}

/** Baseline: the reading after the warm-up pod was removed; running: readings with measured VMs up; after: the last reading. */
export function memoryGrowth(memory: readonly MemorySample[]): { serve: Growth; netd: Growth } | undefined {
  const baseline = memory.find((m) => m.at.startsWith('baseline'));
  const running = memory.filter((m) => m.runningVms > 0);
  const after = [...memory].reverse().find((m) => m.at.startsWith('after all'));
  if (!baseline || running.length === 0) return undefined;
  return {
    serve: rssGrowth('serveKiB', point(baseline), running.map(point), after && point(after)),
    netd: rssGrowth('netdKiB', point(baseline), running.map(point), after && point(after)),
  };
}

function kib(v: number): string {
  return Number.isFinite(v) ? `${Math.round(v)}` : '-';
}

function memorySection(result: VmBenchResult): string {
  const spread = (kibs: readonly number[]) => (kibs.length > 1 ? mib(Math.max(...kibs) - Math.min(...kibs)) : '-');
  const table = formatTable(
    ['memory (VmRSS, lowest of each point\'s readings)', 'VMs', 'serve MiB', 'spread', 'netd MiB', 'spread'],
    result.memory.map((m) => [m.at, String(m.runningVms), mib(m.serve?.rssKiB), spread(m.serveSamplesKiB), mib(m.netd?.rssKiB), spread(m.netdSamplesKiB)]),
    ['left', 'right', 'right', 'right', 'right', 'right'],
  );
  const g = memoryGrowth(result.memory);
  if (!g) return table;
  const row = (name: string, x: Growth) => [name, kib(x.slopeKiB), kib(x.endpointKiB), kib(x.retainedKiB), `<= ${PER_VM_TARGET_KIB} KiB/VM: ${growthVerdict(x)}`];
  const growth = formatTable(
    ['growth per running VM', 'slope KiB', 'endpoint KiB', 'kept after removal KiB', 'target'],
    [row('serve', g.serve), row('netd', g.netd)],
    ['left', 'right', 'right', 'right', 'left'],
  );
  return `${table}\n\n${growth}\n(slope: least squares over the baseline and each point with VMs up; endpoint: (RSS with all up - baseline) / VMs; baseline: after the warm-up pod was removed. Each point is the lowest of its readings; "spread" is how far its readings moved between garbage collections: growth smaller than that is within the noise.)`;
}

function breakdownSection(result: VmBenchResult): string | undefined {
  const pods = measuredPods(result).filter((p) => p.breakdown);
  if (pods.length === 0) return undefined;
  const labels = Object.keys(pods[0]!.breakdown!);
  const rows = labels.map((label) => {
    const samples = pods.map((p) => p.breakdown![label]).filter((v): v is number => v !== undefined && Number.isFinite(v));
    return [label, ms(median(samples)), ms(samples.length ? Math.max(...samples) : NaN)];
  });
  return `Where vmlet's share goes (daemon debug lines; median and max over ${pods.length} pods):\n${formatTable(['component', 'median ms', 'max ms'], rows, ['left', 'right', 'right'])}`;
}

function profileSection(result: VmBenchResult): string | undefined {
  const p = result.profile;
  if (!p) return undefined;
  const head = `Span profile (a second daemon with timing spans around serve's steps; ${p.pods} pods after a warm-up; Run/Create/Start only, each VM removed right after Start):`;
  if (p.error && p.summary.length === 0) return `${head}\n  failed: ${p.error}`;
  const client = `  client round trips with spans on (median): Run ${ms(median(p.clientMs.run.slice(1)))}, Create ${ms(median(p.clientMs.create.slice(1)))}, Start ${ms(median(p.clientMs.start.slice(1)))} ms`;
  const tables = p.summary.map((root) => {
    const rows = root.rows.map((r) => {
      const cut = r.path.lastIndexOf(SEPARATOR);
      const name = cut < 0 ? r.path : r.path.slice(cut + SEPARATOR.length);
      const window = r.startMs === undefined ? '' : `${ms(r.startMs)} - ${ms(r.endMs ?? NaN)}`;
      return [`${'  '.repeat(r.depth + 1)}${name}`, ms(r.medianMs), name === UNTIMED ? '' : String(r.calls), window];
    });
    return formatTable(
      [`${root.root} (service method), n=${root.n}${root.failed ? `, ${root.failed} failed` : ''}: ${ms(root.medianMs)} ms`, 'median ms', 'calls', 'ran at ms (median)'],
      rows,
      ['left', 'right', 'right', 'right'],
    );
  });
  const f = p.libvirtFloor;
  const lines = [client];
  if (f && f.startMs.length > 0) {
    lines.push(
      `  libvirt floor (a minimal domain, same QEMU and memory, through libvirt's RPC without vmlet; one round after each profile pod; median of ${f.startMs.length}): define ${ms(median(f.defineMs))}, start ${ms(median(f.startMs))}, destroy ${ms(median(f.destroyMs))}, undefine ${ms(median(f.undefineMs))} ms`,
    );
    // Pairs: the i-th measured StartContainer record and the floor round right after it.
    const starts = p.records.filter((r) => r.root === 'StartContainer').slice(1).map((r) => r.spans[LIBVIRT_START_SPAN]?.[1]);
    const diffs = starts.flatMap((v, i) => (v !== undefined && f.startMs[i] !== undefined ? [v - f.startMs[i]!] : []));
    if (diffs.length > 0) {
      lines.push(`  vmlet's domain start (LibvirtClient.create in StartContainer) minus the floor's start of the same round: median ${ms(median(diffs))} ms (pairs: ${diffs.map((d) => ms(d)).join(', ')})`);
    }
  } else {
    lines.push('  libvirt floor: not measured');
  }
  return [head, lines.join('\n'), ...tables].join('\n\n') + (p.error ? `\n  profile error: ${p.error}` : '');
}

/** Run + Create + Start with kubelet's two usual mounts and without, warm and cold, warm with one block volume, and each VM's virtiofsd RSS. */
export function mountsSection(result: VmBenchResult): string | undefined {
  const m = result.mounts;
  if (!m) return undefined;
  const rows = mountCaseRows(m.samples);
  const table = formatTable(
    ['mounts phase: per pod (removed after Start)', 'n', 'Run', 'Create', 'Start', 'share median', 'p95', 'min', 'max', ''],
    rows.map((r) => [r.label, String(r.n), ms(r.runMs), ms(r.createMs), ms(r.startMs), ms(r.share.median), ms(r.share.p95), ms(r.share.min), ms(r.share.max), r.wrongKind > 0 ? `${r.wrongKind} more got the other VM kind (left out)` : '']),
    ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'left'],
  );
  const rss = rows.flatMap((r) => r.virtiofsdRssKiB);
  const pss = rows.flatMap((r) => r.virtiofsdPssKiB);
  const own = rows.flatMap((r) => r.virtiofsdPrivateKiB);
  const procs = m.samples.map((s) => s.virtiofsd?.processes).filter((v): v is number => v !== undefined);
  const lines = [
    `(ms, client round trips; ${m.rounds} round(s), the cases interleaved in each; mounts: /etc/hosts (file, rw) and the service-account token volume (dir, read-only); block volume: a 64 MiB loop device in CreateContainer's devices, hot-plugged through QMP with an fd vmlet opened; warm pods on the main daemon after an untimed wait for an idle warm VM, cold pods on a second daemon with --vm-warm-pool 0)`,
    rss.length > 0
      ? `virtiofsd per VM right after Start (every VM has both shares, mounts or not): ${Math.min(...procs)}-${Math.max(...procs)} processes, RSS ${mib(Math.min(...rss))}-${mib(Math.max(...rss))} MiB (median ${mib(median(rss))}), PSS ${mib(Math.min(...pss))}-${mib(Math.max(...pss))} MiB, private (USS) ${mib(Math.min(...own))}-${mib(Math.max(...own))} MiB (RSS counts the shared libraries; USS is what a VM's virtiofsd alone costs)`
      : 'virtiofsd per VM: not read',
    ...m.skipped.map((x) => `not measured: ${x}`),
    ...(m.error ? [`mounts phase error: ${m.error}`] : []),
  ];
  return `${table}\n${lines.join('\n')}`;
}

/** Per warm-pool setting and burst mode: each pod's share, all / warm / cold, against the target; and an idle warm VM's cost. */
export function burstsSection(result: VmBenchResult): string | undefined {
  const b = result.bursts;
  if (!b) return undefined;
  const rows = burstRows(b.runs);
  const table = formatTable(
    [`bursts of ${b.podsPerBurst} pods: share (Run+Create+Start)`, 'idle at start', 'warm', 'cold', 'median', 'p95', 'max', 'warm median', 'cold median', 'cold max', 'wall', `< ${VMLET_SHARE_TARGET_MS} ms`],
    rows.map((r) => [
      r.label, String(r.idleAtStart), String(r.warm), String(r.cold) + (r.failed > 0 ? ` (+${r.failed} failed)` : ''),
      ms(r.share.median), ms(r.share.p95), ms(r.share.max), ms(r.warmShare.median), ms(r.coldShare.median), ms(r.coldShare.max), ms(r.wallMs ?? NaN),
      r.share.n === 0 ? '-' : r.share.max < VMLET_SHARE_TARGET_MS ? 'PASS' : 'MISS',
    ]),
    ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'left'],
  );
  const c = b.idleWarmVm;
  const lines = [
    "(ms, client round trips; back-to-back: each Run sent when the previous pod's Start returned; at once: all Runs sent together; the pods' guests boot meanwhile and all are removed after the burst; before each burst the bench waits, untimed, until the pool's idle count has not changed for 4 s, before the first one until it is back at its floor)",
    `warm-up pod per daemon (not in the rows): share ${b.warmupShareMs.map((v) => ms(v)).join(', ') || '-'} ms`,
    c
      ? `idle warm VM (${c.domain}, paused): QEMU RSS ${mib(c.qemuRssKiB)} MiB, PSS ${mib(c.qemuPssKiB)} MiB, private (USS) ${mib(c.qemuPrivateKiB)} MiB; virtiofsd for its empty shares: ${c.virtiofsdProcesses} processes, RSS ${mib(c.virtiofsdRssKiB)} MiB, private ${mib(c.virtiofsdPrivateKiB)} MiB; its netns ${c.netns}: ${c.links.length} links (${c.links.join(', ')}), nftables ${c.nftTables} table(s), ${c.nftChains} chain(s), ${c.nftRules} rule(s)`
      : 'idle warm VM cost: not measured',
    ...(b.error ? [`bursts phase error: ${b.error}`] : []),
  ];
  return `${table}\n${lines.join('\n')}`;
}

/** The scale goals at 1 pod and at N: a row per goal with the measured value and MET/MISS. */
export function scaleSection(result: VmBenchResult): string | undefined {
  const sc: ScaleResult | undefined = result.scale;
  if (!sc) return undefined;
  const rows = scaleRows(sc);
  const one = sc.levels.find((l) => l.runningVms === 1);
  const many = [...sc.levels].sort((a, b) => b.runningVms - a.runningVms)[0];
  const n = many?.runningVms ?? 0;
  const lines: string[] = [];
  if (rows.length > 0) {
    lines.push(
      formatTable(
        [`scale: ${n} running VM pods (${sc.memoryMiB} MiB, TCG)`, 'at 1 pod', `at ${n} pods`, 'measured', 'goal'],
        rows.map((r) => [r.goal, r.atOne, r.atMany, r.measured, r.verdict]),
        ['left', 'right', 'right', 'left', 'left'],
      ),
    );
  }
  const lvl = (l: NonNullable<typeof one>) => {
    const procs = l.idle.processes.filter((p) => p.ticks > 0).map((p) => `${p.comm}(${p.pid}) ${p.ticks}`).join(', ');
    return `  at ${l.runningVms} VM(s): idle window ${l.idle.seconds.toFixed(0)} s, load average ${l.idle.loadavgStart.map((x) => x.toFixed(2)).join(' ')} -> ${l.idle.loadavgEnd.map((x) => x.toFixed(2)).join(' ')}; vmlet ${l.idle.vmletTicks} ticks (${procs || 'none'}); guests ${l.idle.guestCores.toFixed(2)} cores, machine ${l.idle.machineCores.toFixed(2)} cores; serve ${mib(l.serveRssKiB)} MiB (readings ${mib(Math.min(...l.serveSamplesKiB))}-${mib(Math.max(...l.serveSamplesKiB))}), netd ${mib(l.netdRssKiB)} MiB (${mib(Math.min(...l.netdSamplesKiB))}-${mib(Math.max(...l.netdSamplesKiB))})${l.serveAfterGc && l.netdAfterGc ? `; after a full GC: serve ${mib(l.serveAfterGc.rssKiB)} MiB (JS heap ${mib(l.serveAfterGc.heapUsedKiB)}), netd ${mib(l.netdAfterGc.rssKiB)} MiB (heap ${mib(l.netdAfterGc.heapUsedKiB)})` : ''}`;
  };
  for (const l of sc.levels) lines.push(lvl(l));
  const ok = sc.podSamples.filter((p) => p.readyMs !== undefined);
  if (ok.length > 0) {
    const ready = ok.map((p) => p.readyMs!);
    const share = ok.map((p) => p.shareMs!);
    lines.push(
      `  bring-up: ${ok.length} pods, ${sc.batch} at a time, ${ok.filter((p) => p.gotWarm).length} on a warm VM; Run+Create+Start median ${ms(median(share))} ms, Start -> guest "ready" median ${ms(median(ready))}, max ${ms(Math.max(...ready))} ms; wall ${((sc.bringUpWallMs ?? NaN) / 1000).toFixed(0)} s; teardown of all (4 at a time) ${ms(sc.teardownWallMs ?? NaN)} ms`,
    );
  }
  lines.push(
    `  (idle CPU: utime+stime of serve and its own descendants (netd, helpers; not QEMU or virtiofsd), reaped children included, over ${sc.idleSeconds} s with nothing calling; RSS: lowest VmRSS of 10 readings 0.5 s apart, then the same processes' RSS right after a full GC (bench/vm/gc_probe.ts, a preload run with --expose-gc that collects on SIGUSR2; the verdict uses it when present), growth = (N - 1 pod) / (N - 1), and the least-squares slope of a shorter reading after each batch; two warm-up pods (one warm, one cold start) ran and went before the 1-pod level; latencies: ${sc.callsPerMethod} raw round trips per method (no client decoding), methods interleaved, in ms p10 / median / p95; the verdict reads p10, the calls the scheduler did not delay (on a loaded machine the median is mostly waiting for a CPU); Version does no per-pod work: its ratios are what the machine's load alone did between the two levels)`,
  );
  if (sc.error) lines.push(`scale phase error: ${sc.error}`);
  return lines.join('\n');
}

function teardownLine(result: VmBenchResult): string | undefined {
  const t = result.teardown;
  if (t.length === 0) return undefined;
  const med = (k: 'stopContainerMs' | 'removeContainerMs' | 'stopSandboxMs' | 'removeSandboxMs') => ms(median(t.map((x) => x[k])));
  if (result.options.teardown === 'sandbox') {
    return `teardown (median of ${t.length}): StopPodSandbox with the VM running ${med('stopSandboxMs')}, RemovePodSandbox ${med('removeSandboxMs')} ms`;
  }
  return `teardown (median of ${t.length}): StopContainer(timeout 0) ${med('stopContainerMs')}, RemoveContainer ${med('removeContainerMs')}, StopPodSandbox ${med('stopSandboxMs')}, RemovePodSandbox ${med('removeSandboxMs')} ms`;
}

function cpuLine(result: VmBenchResult): string {
  const pods = measuredPods(result);
  const other = values(pods, (p) => p.otherCpuCores);
  const guests = values(pods, (p) => p.guestCpuCores);
  return `CPUs busy during each pod (Run sent -> ACK, median): guests ${guests.length ? median(guests).toFixed(2) : '-'}, everything else outside bench/serve/netd (libvirtd's share of the start included) ${other.length ? median(other).toFixed(2) : '-'}, of ${result.machine.nproc}`;
}

function podLines(result: VmBenchResult): string[] {
  return result.pods.map((p) => {
    const what = p.error
      ? `FAILED: ${p.error}`
      : `ip ${p.podIp ?? '?'}  Run ${ms(p.runMs ?? NaN)}  Create ${ms(p.createMs ?? NaN)}  Start ${ms(p.startMs ?? NaN)}  share ${ms(p.vmletMs ?? NaN)}  boot ${ms(p.bootMs ?? NaN)}  total ${ms(p.totalMs ?? NaN)}`;
    return `  ${p.warmup ? 'warm-up ' : ''}${p.name}: ${what}`;
  });
}

function cleanupLine(result: VmBenchResult): string {
  const c = result.cleanup;
  const left = [
    ...c.leftoverDomains.map((d) => `domain ${d}`),
    ...c.leftoverNetns.map((n) => `netns ${n}`),
    ...c.leftoverQemuPids.map((p) => `qemu pid ${p}`),
    ...(c.bridgeLeft ? [`bridge ${result.network.bridge}`] : []),
    ...(c.leftoverMounts ?? []).map((m) => `mount ${m}`),
  ];
  const parts = [left.length === 0 ? 'cleanup: nothing left (domains, netns, QEMU processes, mounts, bridge checked)' : `cleanup LEFT: ${left.join(', ')}`];
  if (c.errors.length > 0) parts.push(`cleanup errors: ${c.errors.join('; ')}`);
  return parts.join('\n');
}

export function formatReport(result: VmBenchResult): string {
  const o = result.options;
  const m = result.machine;
  const header = [
    `vmlet VM pods: phases ${(o.phases ?? ['pods', 'mounts', 'bursts']).join(',')}; ${o.phases === undefined || o.phases.includes('pods') ? `${o.pods} measured pod(s) + 1 warm-up, ${o.concurrency === 1 ? 'one after the other' : `${o.concurrency} at a time`}, guest ${o.vmMemoryMiB} MiB, ` : ''}${m.kvm}, daemon from ${result.runtime.mode}`,
    `machine: ${m.nproc} CPUs (${m.cpuModel}), ${m.memTotalMiB} MiB, ${m.kernel.split(' ').slice(0, 2).join(' ')}, node ${m.node}, ${m.libvirtd}, ${m.qemu}`,
    `load average at start ${m.loadavgStart.map((l) => l.toFixed(2)).join(' ')}, at end ${m.loadavgEnd.map((l) => l.toFixed(2)).join(' ')}`,
  ];
  // A result from before --phases ran the pods phase.
  const podsPhase = o.phases === undefined || o.phases.includes('pods');
  const sections = [header.join('\n')];
  if (podsPhase) sections.push(mainTable(result), [warmLine(result), warmupLine(result), ...podLines(result)].join('\n'), signalLines(result).join('\n'), cpuLine(result));
  const b = breakdownSection(result);
  if (b) sections.push(b);
  const prof = profileSection(result);
  if (prof) sections.push(prof);
  const mounts = mountsSection(result);
  if (mounts) sections.push(mounts);
  const bursts = burstsSection(result);
  if (bursts) sections.push(bursts);
  const scale = scaleSection(result);
  if (scale) sections.push(scale);
  if (podsPhase) sections.push(memorySection(result));
  const t = teardownLine(result);
  if (t) sections.push(t);
  if (result.foreignDomainsAtStart.length > 0) sections.push(`note: vmlet domains of others were present at the start: ${result.foreignDomainsAtStart.join(', ')}`);
  sections.push(cleanupLine(result));
  if (result.error) sections.push(`ERROR: ${result.error}`);
  return sections.join('\n\n');
}
