/** The printed report of a sandbox bench run. Pure: a result in, text out. */
import { warmStopLines } from './warm_stop.js';
import { vmStopLines } from './vm_stop.js';
import { formatTable, mib, ms } from '../lib/table.js';
import { median, summarize } from '../lib/stats.js';
import { spanRows } from './spans.js';
import type { SandboxBenchResult, PhaseResult } from './result.js';
import type { CallComponents } from './log_breakdown.js';

/** RunPodSandbox median may be at most this many times the floor's median. */
export const RUN_TARGET_RATIO = 1.3;
/** ListPodSandbox over the store must answer within this. */
export const LIST_TARGET_MS = 5;

export function runRatio(phase: PhaseResult): number {
  return median(phase.vmlet.run) / median(phase.floor.setupMs);
}

export function runVerdict(ratio: number): 'PASS' | 'MISS' {
  return ratio <= RUN_TARGET_RATIO ? 'PASS' : 'MISS';
}

function phaseLabel(p: PhaseResult): string {
  return p.name === 'sequential' ? 'sequential' : `${p.concurrency} at a time`;
}

function sandboxTable(result: SandboxBenchResult): string {
  const rows: string[][] = [];
  for (const p of result.phases) {
    const floorRun = summarize(p.floor.setupMs);
    const floorStop = summarize(p.floor.teardownMs);
    const calls: [string, number[], ReturnType<typeof summarize> | undefined][] = [
      ['RunPodSandbox', p.vmlet.run, floorRun],
      ['StopPodSandbox', p.vmlet.stop, floorStop],
      ['RemovePodSandbox', p.vmlet.remove, undefined],
    ];
    for (const [call, samples, floor] of calls) {
      const s = summarize(samples);
      const ratio = floor ? s.median / floor.median : NaN;
      const target = call === 'RunPodSandbox' ? `<=${RUN_TARGET_RATIO}x ${runVerdict(ratio)}` : '';
      rows.push([
        phaseLabel(p), call, String(s.n), ms(s.median), ms(s.p95),
        floor ? ms(floor.median) : '-', floor ? ms(floor.p95) : '-',
        floor ? `${ratio.toFixed(2)}x` : '-', target,
      ]);
    }
  }
  return formatTable(
    ['phase', 'call', 'n', 'median ms', 'p95 ms', 'floor med', 'floor p95', 'med/floor', 'target'],
    rows,
    ['left', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'left'],
  );
}

function floorDetail(result: SandboxBenchResult): string {
  const rows = result.phases.map((p) => [
    phaseLabel(p),
    ms(median(p.floor.netnsAddMs)),
    ms(median(p.floor.pluginAddMs.map((a) => a.reduce((x, y) => x + y, 0)))),
    ms(median(p.floor.pluginDelMs.map((a) => a.reduce((x, y) => x + y, 0)))),
    ms(median(p.floor.netnsDeleteMs)),
  ]);
  return formatTable(['floor parts (median ms)', 'ip netns add', 'CNI ADD', 'CNI DEL', 'ip netns delete'], rows, ['left', 'right', 'right', 'right', 'right']);
}

function verdict(value: number): string {
  return value < LIST_TARGET_MS ? 'PASS' : 'MISS';
}

function listTable(result: SandboxBenchResult): string {
  const list = result.list!;
  const rows = list.cases.map((c) => {
    const client = summarize(c.clientMs);
    const raw = summarize(c.rawMs);
    return [
      c.name, String(c.items), (c.responseBytes / 1024).toFixed(0), String(client.n),
      ms(client.median), ms(client.p95), ms(raw.median), ms(raw.p95),
      ms(median(c.serverMs)), ms(median(c.encodeMs)), ms(median(c.decodeMs)),
    ];
  });
  const table = formatTable(
    ['ListPodSandbox filter', 'items', 'KiB', 'calls', 'median', 'p95', 'raw med', 'raw p95', 'handler', 'encode', 'decode'],
    rows,
    ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
  );
  const refRows = list.cases
    .filter((c) => c.reference)
    .map((c) => {
      const client = summarize(c.reference!.clientMs);
      const raw = summarize(c.reference!.rawMs);
      return [c.name, String(c.items), (c.reference!.responseBytes / 1024).toFixed(0), String(client.n), ms(client.median), ms(client.p95), ms(raw.median), ms(raw.p95)];
    });
  const refTable =
    refRows.length === 0
      ? []
      : [
          '',
          'reference: the same responses from a bare grpc-js server (vmlet\'s proto and loader options, no :authority',
          'rewriter, no records, no logging; own process, same socket kind):',
          formatTable(
            ['ListPodSandbox filter', 'items', 'KiB', 'calls', 'median', 'p95', 'raw med', 'raw p95'],
            refRows,
            ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
          ),
        ];
  const verdicts = list.cases.map((c) => {
    const client = summarize(c.clientMs);
    const raw = summarize(c.rawMs);
    return `  ${c.name}: target <${LIST_TARGET_MS} ms: decoded median ${verdict(client.median)}, p95 ${verdict(client.p95)}; raw median ${verdict(raw.median)}, p95 ${verdict(raw.p95)}`;
  });
  return [
    table,
    'ms; median/p95: round trip with the response decoded by this (Node) client; raw: the same call with the response',
    'left as bytes; handler: the daemon\'s own time (log line, before encoding); encode/decode: grpc-js codec on one',
    'such response, timed in the bench process',
    ...verdicts,
    ...refTable,
  ].join('\n');
}

function memoryTable(result: SandboxBenchResult): string {
  const rows = result.memory.map((m) => [m.at, mib(m.serve?.rssKiB), mib(m.netd?.rssKiB), mib(m.serve?.hwmKiB), mib(m.netd?.hwmKiB)]);
  return formatTable(['memory (MiB)', 'serve RSS', 'netd RSS', 'serve peak', 'netd peak'], rows, ['left', 'right', 'right', 'right', 'right']);
}

function componentsTable(title: string, components: CallComponents): string {
  const rows = Object.entries(components).map(([name, values]) => [name, ms(median(values)), ms(summarize(values).p95)]);
  return formatTable([title, 'median ms', 'p95 ms'], rows, ['left', 'right', 'right']);
}

function spansTable(result: SandboxBenchResult): string {
  const spans = result.spans!;
  const rows = spanRows(spans.iterations.map((it) => it.spans)).map((r) => [
    `${'  '.repeat(r.depth)}${r.name}`,
    Number.isInteger(r.calls) ? String(r.calls) : r.calls.toFixed(1),
    ms(r.medianMs),
  ]);
  return formatTable([`netd spans (${spans.iterations.length} sandboxes, median per sandbox)`, 'calls', 'ms'], rows, ['left', 'right', 'right']);
}

const cores = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : '-');

export function formatReport(result: SandboxBenchResult): string {
  const { machine: m, options: o } = result;
  const out: string[] = [];
  out.push(
    `vmlet sandbox bench: N=${o.n}, concurrency=${o.concurrency}, daemon from ${result.runtime.mode}` +
      `${result.runtime.mode === 'dist' ? ' (tsc build, plain node)' : ' (sources under tsx)'}`,
    `${m.nproc} CPUs (${m.cpuModel}), ${m.memTotalMiB} MiB, ${m.kernel.split(' ').slice(0, 2).join(' ')}, node ${m.node}, ` +
      `CNI plugins ${m.cniPluginsVersion}, state dirs on ${m.tmpFsType}, ${m.date}`,
    `load average (1/5/15 min) at start ${result.loadavg.start.map((l) => l.toFixed(2)).join(' ')}, at end ${result.loadavg.end.map((l) => l.toFixed(2)).join(' ')}`,
    `network: bridge ${result.network.bridge} + host-local ${result.network.subnet}, no ipMasq, pods route only ${'198.18.0.0/15'}`,
    '',
  );
  if (result.phases.length > 0) {
    out.push(sandboxTable(result), '');
    out.push('floor of Run = ip netns add + CNI ADD of the same conflist; floor of Stop = CNI DEL + ip netns delete');
    out.push(
      'RunPodSandbox returns after netns + CNI ADD; netd wires the VM side (bridge, TAP, isolation, DHCP) once idle,',
      'or at once for a CreateContainer. Before its Stops, each phase waits for every VM side, so Stop tears down whole sandboxes:',
    );
    for (const p of result.phases) {
      const ready = p.wallMs.vmSidesReadyAfterRuns;
      if (ready !== undefined) out.push(`  ${phaseLabel(p)}: all ${p.n} VM sides ready ${ms(ready)} ms after the last RunPodSandbox returned`);
    }
    if (result.versionMs) {
      const v = summarize(result.versionMs);
      out.push(`fixed cost of one RPC (Version round trip, ${v.n} calls): median ${ms(v.median)} ms, p95 ${ms(v.p95)} ms`);
    }
    out.push('');
    out.push(floorDetail(result), '');
    for (const p of result.phases) {
      out.push(`CPUs busy outside the bench and its daemon (other users, kernel), ${phaseLabel(p)}: floor ${cores(p.otherCpuCores.floor)}, vmlet ${cores(p.otherCpuCores.vmlet)} of ${m.nproc}`);
    }
    out.push('');
    for (const p of result.phases) {
      const ratio = runRatio(p);
      out.push(`RunPodSandbox ${phaseLabel(p)}: median ${ms(median(p.vmlet.run))} ms = ${ratio.toFixed(2)}x the floor (${ms(median(p.floor.setupMs))} ms); target <=${RUN_TARGET_RATIO}x: ${runVerdict(ratio)}`);
    }
    out.push('');
  }
  if (result.warmStop) {
    out.push(...('skipped' in result.warmStop ? [`warm-stop phase skipped: ${result.warmStop.skipped}`] : warmStopLines(result.warmStop)), '');
  }
  if (result.vmStop) {
    out.push(...('skipped' in result.vmStop ? [`vm-stop phase skipped: ${result.vmStop.skipped}`] : result.vmStop.flatMap(vmStopLines)), '');
  }
  if (result.list) {
    out.push(`ListPodSandbox with ${result.list.records} sandboxes in the store (stopped records written by the bench: NOTREADY, no network)`);
    out.push(listTable(result));
    out.push(`  CPUs busy outside the bench and its daemon during these calls: ${cores(result.list.otherCpuCores)} of ${m.nproc}`, '');
  }
  if (result.memory.length > 0) out.push(memoryTable(result), '');
  const seq = result.phases.find((p) => p.name === 'sequential');
  if (seq?.logBreakdown) {
    out.push('Where the time goes (sequential phase, from the daemon\'s debug lines):');
    const b = seq.logBreakdown;
    if (b.run) out.push(componentsTable('RunPodSandbox', b.run), '');
    if (b.stop) out.push(componentsTable('StopPodSandbox', b.stop), '');
    if (b.remove) out.push(componentsTable('RemovePodSandbox', b.remove), '');
  }
  if (result.spans) {
    out.push(`netd's NetworkManager driven directly with timing spans (${result.spans.mode}; "(other)" = parent minus children, negative when children overlap):`);
    out.push(spansTable(result));
    const mem = result.spans.memoryAfterGc;
    if (mem) {
      const n = result.spans.iterations.length;
      const change = (k: 'heapUsed' | 'heapTotal' | 'rss') =>
        `${k} ${mib(mem.afterWarmup[k] / 1024)} → ${mib(mem.afterAll[k] / 1024)} MiB (${((mem.afterAll[k] - mem.afterWarmup[k]) / 1024 / n).toFixed(1)} KiB per sandbox)`;
      out.push(
        `probe memory after a full GC, from after the warm-up to after ${n} more sandboxes set up and torn down:`,
        `  ${change('heapUsed')}, ${change('heapTotal')}, ${change('rss')}`,
      );
    }
    out.push(`CPUs busy outside the bench and the probe during the profile: ${cores(result.spans.otherCpuCores)} of ${m.nproc}`);
    if (result.spans.notFound.length > 0) out.push(`not timed (no instance found in the manager): ${result.spans.notFound.join(', ')}`);
    out.push('');
  }
  const c = result.cleanup;
  out.push(
    c.leftoverNetns.length === 0 && !c.bridgeLeft && c.errors.length === 0
      ? 'cleanup: all sandboxes removed, daemons stopped, bridge deleted, no bench netns left'
      : `cleanup PROBLEMS: leftover netns ${JSON.stringify(c.leftoverNetns)}, bridge left: ${c.bridgeLeft}, errors: ${c.errors.join('; ')}`,
  );
  if (result.error) out.push(`bench failed: ${result.error}`);
  return out.join('\n');
}
