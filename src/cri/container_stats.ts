/** ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats: the collector's usage (src/container/stats.ts) as CRI messages. */
import type { ContainerStats } from './generated/runtime/v1/ContainerStats.js';
import type { PodSandboxStats } from './generated/runtime/v1/PodSandboxStats.js';
import type { ContainerService } from '../container/service.js';
import type { ContainerRecord } from '../container/records.js';
import type { ContainerUsage, StatsCollector } from '../container/stats.js';
import type { SandboxService } from '../sandbox/service.js';
import type { SandboxRecord } from '../sandbox/records.js';
import type { HandlerMap } from './rpc.js';
import { checkIdOrPrefix, checkStringMap } from './validate.js';
import { nowNs } from '../clock.js';

/** `fsMountpoint`: the filesystem of the writable layers (the state dir). */
export function statsHandlers(stats: StatsCollector, containers: ContainerService, sandboxes: SandboxService, fsMountpoint: string): HandlerMap {
  const containerStats = async (r: ContainerRecord) => containerStatsOf(r, await stats.usage(r), fsMountpoint);
  const sandboxStats = async (s: SandboxRecord) => sandboxStatsOf(s, await Promise.all(containers.list({ sandboxId: s.id }).map(containerStats)));
  return {
    async ContainerStats(req: { container_id?: string }) {
      const r = containers.mustGet(checkIdOrPrefix(req.container_id, 'container_id'));
      return { stats: await containerStats(r) };
    },
    async ListContainerStats(req: { filter?: { id?: string; pod_sandbox_id?: string; label_selector?: Record<string, string> } | null }) {
      const f = req.filter;
      if (f?.id && !/^[a-f0-9]{1,64}$/.test(f.id)) return { stats: [] };
      if (f?.pod_sandbox_id && !/^[a-f0-9]{1,64}$/.test(f.pod_sandbox_id)) return { stats: [] };
      const records = containers.list({ id: f?.id || undefined, sandboxId: f?.pod_sandbox_id || undefined, labels: checkStringMap(f?.label_selector, 'filter.label_selector') });
      return { stats: await Promise.all(records.map(containerStats)) };
    },
    async PodSandboxStats(req: { pod_sandbox_id?: string }) {
      const s = sandboxes.mustGet(checkIdOrPrefix(req.pod_sandbox_id, 'pod_sandbox_id'));
      return { stats: await sandboxStats(s) };
    },
    async ListPodSandboxStats(req: { filter?: { id?: string; label_selector?: Record<string, string> } | null }) {
      const f = req.filter;
      if (f?.id && !/^[a-f0-9]{1,64}$/.test(f.id)) return { stats: [] };
      const records = sandboxes.list({ id: f?.id || undefined, labels: checkStringMap(f?.label_selector, 'filter.label_selector') });
      return { stats: await Promise.all(records.map(sandboxStats)) };
    },
  };
}

function containerStatsOf(r: ContainerRecord, u: ContainerUsage, fsMountpoint: string): ContainerStats {
  const ts = u.timestampNs.toString();
  return {
    attributes: { id: r.id, metadata: { name: r.metadata.name, attempt: r.metadata.attempt }, labels: r.labels, annotations: r.annotations },
    cpu: { timestamp: ts, usage_core_nano_seconds: { value: u.cpuNs.toString() }, usage_nano_cores: u.nanoCores === undefined ? {} : { value: u.nanoCores.toString() } },
    memory: {
      timestamp: ts,
      working_set_bytes: { value: u.rssBytes.toString() },
      usage_bytes: { value: u.rssBytes.toString() },
      rss_bytes: { value: u.rssBytes.toString() },
      available_bytes: { value: u.availableBytes.toString() },
      page_faults: { value: (u.majorFaults + u.minorFaults).toString() },
      major_page_faults: { value: u.majorFaults.toString() },
    },
    writable_layer: { timestamp: ts, fs_id: { mountpoint: fsMountpoint }, used_bytes: { value: u.diskBytes.toString() }, inodes_used: { value: u.diskInodes.toString() } },
  };
}

function sandboxStatsOf(s: SandboxRecord, containerStats: ContainerStats[]): PodSandboxStats {
  const sum = (pick: (c: ContainerStats) => { value?: unknown } | null | undefined) =>
    containerStats.reduce((acc, c) => acc + BigInt(String(pick(c)?.value ?? '0')), 0n).toString();
  const ts = nowNs().toString();
  return {
    attributes: { id: s.id, metadata: { ...s.metadata }, labels: s.labels, annotations: s.annotations },
    linux: {
      cpu: { timestamp: ts, usage_core_nano_seconds: { value: sum((c) => c.cpu?.usage_core_nano_seconds) } },
      memory: { timestamp: ts, working_set_bytes: { value: sum((c) => c.memory?.working_set_bytes) }, usage_bytes: { value: sum((c) => c.memory?.usage_bytes) } },
      containers: containerStats,
    },
  };
}
