/**
 * Entry point (run as a child of the bench, as root, in the daemon's runtime mode): drives the
 * product's own NetworkManager — the object netd runs — through setup and teardown for each given
 * sandbox id, with timing spans around its collaborators, and prints the spans as one JSON line.
 * The first id is a warm-up and is reported apart.
 *
 * argv: --flags <json of vmlet serve flags> --ids <id,id,…> --tag <run tag>
 */
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { loadConfig } from '../../src/config/load.js';
import { NetworkManager } from '../../src/netd/manager.js';
import { silentLogger } from '../../src/log.js';
import type { PluginRequest } from '../../src/network/cni/exec.js';
import type { SetupParams } from '../../src/netd/protocol.js';
import { RecordStore } from '../../src/store/record_store.js';
import { NetnsManager } from '../../src/network/netns.js';
import { CniChain } from '../../src/network/cni/chain.js';
import { AttachmentCache } from '../../src/network/cni/cache.js';
import { ExecPluginRunner } from '../../src/network/cni/exec.js';
import { ExecIpRunner } from '../../src/network/iproute.js';
import { DhcpIsolation } from '../../src/network/isolation.js';
import { TapBinding } from '../../src/network/bindings/tap.js';
import { BindingSelector } from '../../src/network/bindings/select.js';
import { VmSide } from '../../src/netd/vm_side.js';
import { DhcpResponders } from '../../src/netd/dhcp_responders.js';
import { SpanRecorder, type SpanTotals } from './spans.js';

export interface SpanIteration {
  sandboxId: string;
  setupMs: number;
  teardownMs: number;
  spans: SpanTotals;
}

export interface SpanReport {
  mode: string;
  warmup: SpanIteration;
  iterations: SpanIteration[];
  /** Product methods that got a span, and classes the probe found no instance of. */
  timed: string[];
  notFound: string[];
  /**
   * This process's memory after a full GC, once after the warm-up sandbox and once after the
   * others (all torn down): what the manager keeps per sandbox lifecycle. Absent without --expose-gc.
   */
  memoryAfterGc?: { afterWarmup: NodeJS.MemoryUsage; afterAll: NodeJS.MemoryUsage };
}

/** Which methods of which product classes get a span, and under what name. */
const TIMED: { cls: Function; methods: Record<string, string | ((args: unknown[]) => string)> }[] = [
  { cls: RecordStore, methods: { put: 'netd record write (synced behind)', delete: 'netd record delete (synced behind)' } },
  { cls: NetnsManager, methods: { create: 'netns create', delete: 'netns delete' } },
  { cls: CniChain, methods: { add: 'CniChain.add', del: 'CniChain.del' } },
  {
    cls: AttachmentCache,
    methods: { save: 'CNI cache write (synced behind)', load: 'CNI cache read', remove: 'CNI cache remove', list: 'CNI cache list' },
  },
  {
    cls: ExecPluginRunner,
    methods: {
      run: (args) => {
        const req = args[0] as PluginRequest;
        return `plugin ${req.command} ${req.pluginType}`;
      },
    },
  },
  { cls: ExecIpRunner, methods: { show: 'ip -j show', apply: 'ip -batch apply' } },
  { cls: DhcpIsolation, methods: { install: 'nft install', remove: 'nft remove' } },
  { cls: TapBinding, methods: { plan: 'tap plan', wire: 'tap wire', unwire: 'tap unwire' } },
  { cls: BindingSelector, methods: { select: 'select binding' } },
  { cls: VmSide, methods: { prepare: 'prepare VM side' } },
  {
    cls: DhcpResponders,
    methods: { start: 'start DHCP (native helper binds :67 in the netns)', stop: 'stop DHCP' },
  },
];

/**
 * Finds the manager's collaborators by class, walking its fields (they are private in TypeScript,
 * and their layout changes), and wraps the listed methods. Returns the classes it found none of,
 * so a report can say what is not timed (their time then shows as "(other)").
 */
function instrument(manager: NetworkManager, spans: SpanRecorder): { timed: string[]; notFound: string[] } {
  spans.wrap(manager, 'setup', 'setup');
  spans.wrap(manager, 'teardown', 'teardown');
  // The VM side, asked for right after setup as CreateContainer does (netd would otherwise wait until idle).
  spans.wrap(manager, 'vmNetwork', 'vmNetwork (VM side: wiring + DHCP)');
  const seen = new Set<object>([manager]);
  const found = new Set<Function>();
  const timed: string[] = [];
  let frontier: object[] = [manager];
  for (let depth = 0; depth < 8 && frontier.length > 0; depth++) {
    const next: object[] = [];
    for (const obj of frontier) {
      for (const value of Object.values(obj)) {
        if (typeof value !== 'object' || value === null || seen.has(value)) continue;
        if (value instanceof Map || value instanceof Set || ArrayBuffer.isView(value)) continue;
        seen.add(value);
        next.push(value);
        const entry = TIMED.find((t) => value instanceof t.cls);
        if (!entry) continue;
        found.add(entry.cls);
        for (const [method, label] of Object.entries(entry.methods)) {
          if (typeof (value as Record<string, unknown>)[method] !== 'function') continue;
          spans.wrap(value, method, label);
          timed.push(`${entry.cls.name}.${method}`);
        }
      }
    }
    frontier = next;
  }
  return { timed, notFound: TIMED.filter((t) => !found.has(t.cls)).map((t) => t.cls.name) };
}

function setupParams(sandboxId: string, tag: string, index: number): SetupParams {
  const name = `bench-${tag}-spans-${index}`;
  return {
    sandboxId,
    podName: name,
    podNamespace: 'vmlet-bench',
    podUid: `${tag}-spans-${index}`,
    hostname: name,
    dns: { servers: ['198.18.0.10'], searches: ['svc.cluster.local'], options: ['ndots:5'] },
    portMappings: [{ protocol: 'tcp', containerPort: 8080, hostPort: 0, hostIP: '' }],
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { flags: { type: 'string' }, ids: { type: 'string' }, tag: { type: 'string' } } });
  if (!values.flags || !values.ids || !values.tag) throw new Error('usage: netd_spans --flags <json> --ids <id,…> --tag <tag>');
  const config = loadConfig({ flags: { ...(JSON.parse(values.flags) as Record<string, string>), 'log-level': 'silent' } });
  const ids = values.ids.split(',');
  const manager = new NetworkManager(config, silentLogger);
  await manager.load();
  const spans = new SpanRecorder();
  const { timed, notFound } = instrument(manager, spans);
  const iterations: SpanIteration[] = [];
  const gc = (globalThis as { gc?: () => void }).gc;
  const settledMemory = () => {
    gc!();
    return process.memoryUsage();
  };
  let afterWarmup: NodeJS.MemoryUsage | undefined;
  for (const [index, sandboxId] of ids.entries()) {
    if (index === 1 && gc) afterWarmup = settledMemory();
    const t0 = performance.now();
    try {
      await manager.setup(setupParams(sandboxId, values.tag, index));
    } catch (err) {
      // setup rolls itself back; a teardown makes sure, so nothing is left for the bench to sweep.
      await manager.teardown({ sandboxId }).catch(() => {});
      throw err;
    }
    const t1 = performance.now();
    const vm = await manager.vmNetwork({ sandboxId });
    if (!vm.ready) throw new Error(`VM side of ${sandboxId} not prepared: ${vm.message}`);
    await manager.teardown({ sandboxId });
    const t2 = performance.now();
    iterations.push({ sandboxId, setupMs: t1 - t0, teardownMs: t2 - t1, spans: spans.take() });
  }
  const memoryAfterGc = gc && afterWarmup ? { afterWarmup, afterAll: settledMemory() } : undefined;
  await manager.close();
  const report: SpanReport = {
    mode: import.meta.url.endsWith('.ts') ? 'tsx' : 'dist',
    warmup: iterations[0]!,
    iterations: iterations.slice(1),
    timed,
    notFound,
    ...(memoryAfterGc ? { memoryAfterGc } : {}),
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`netd_spans: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
