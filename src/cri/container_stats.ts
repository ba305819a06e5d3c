/** ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats: CPU and memory from libvirt, disk from the overlay. */
import { join } from 'node:path';
import type { ContainerStats } from './generated/runtime/v1/ContainerStats.js';
import type { PodSandboxStats } from './generated/runtime/v1/PodSandboxStats.js';
import type { ContainerService } from '../container/service.js';
import type { ContainerRecord } from '../container/records.js';
import type { SandboxService } from '../sandbox/service.js';
import type { SandboxRecord } from '../sandbox/records.js';
import { overlayUsage } from '../container/disk.js';
import { OVERLAY } from '../container/service.js';
import type { HandlerMap } from './rpc.js';
import { checkIdOrPrefix, checkStringMap, nowNs } from './validate.js';
import type { LibvirtConnection } from '../libvirt/connection.js';
import { errorText } from '../errors.js';
import type { Logger } from '../log.js';

interface CpuSample {
  cpuNs: bigint;
  atNs: bigint;
}

export class StatsCollector {
  /** Previous CPU sample per container, so usage_nano_cores is a rate between two calls. */
  private readonly lastCpu = new Map<string, CpuSample>();

  constructor(
    private readonly containers: ContainerService,
    private readonly libvirt: LibvirtConnection,
    private readonly stateDir: string,
    private readonly logger: Logger,
  ) {}

  async containerStats(r: ContainerRecord): Promise<ContainerStats> {
    const timestamp = nowNs();
    let cpuNs = 0n;
    let rssBytes = 0n;
    let memoryBytes = BigInt(r.vm.memoryBytes);
    let majorFaults = 0n;
    let minorFaults = 0n;
    if (r.state === 'RUNNING') {
      try {
        const dom = await this.containers.domainRef(r);
        if (dom) {
          const client = this.libvirt.current();
          const info = await client.getInfo(dom);
          cpuNs = info.cpuTimeNs;
          memoryBytes = info.memoryKiB * 1024n;
          const mem = await client.memoryStats(dom).catch(() => undefined);
          rssBytes = (mem?.rss ?? 0n) * 1024n;
          majorFaults = mem?.majorFault ?? 0n;
          minorFaults = mem?.minorFault ?? 0n;
        }
      } catch (err) {
        this.logger.debug({ err: errorText(err), containerId: r.id }, 'stats unavailable');
      }
    }
    const prev = this.lastCpu.get(r.id);
    this.lastCpu.set(r.id, { cpuNs, atNs: timestamp });
    const nanoCores = prev && timestamp > prev.atNs && cpuNs >= prev.cpuNs ? ((cpuNs - prev.cpuNs) * 1_000_000_000n) / (timestamp - prev.atNs) : undefined;
    const disk = await overlayUsage(join(r.dir, OVERLAY));
    const ts = timestamp.toString();
    return {
      attributes: { id: r.id, metadata: { name: r.metadata.name, attempt: r.metadata.attempt }, labels: r.labels, annotations: r.annotations },
      cpu: { timestamp: ts, usage_core_nano_seconds: { value: cpuNs.toString() }, usage_nano_cores: nanoCores === undefined ? {} : { value: nanoCores.toString() } },
      memory: {
        timestamp: ts,
        working_set_bytes: { value: rssBytes.toString() },
        usage_bytes: { value: rssBytes.toString() },
        rss_bytes: { value: rssBytes.toString() },
        available_bytes: { value: (memoryBytes > rssBytes ? memoryBytes - rssBytes : 0n).toString() },
        page_faults: { value: (majorFaults + minorFaults).toString() },
        major_page_faults: { value: majorFaults.toString() },
      },
      writable_layer: { timestamp: ts, fs_id: { mountpoint: this.stateDir }, used_bytes: { value: disk.bytes.toString() }, inodes_used: { value: disk.inodes.toString() } },
    };
  }

  async sandboxStats(s: SandboxRecord): Promise<PodSandboxStats> {
    const containerStats = await Promise.all(this.containers.list({ sandboxId: s.id }).map((r) => this.containerStats(r)));
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

  forget(containerId: string): void {
    this.lastCpu.delete(containerId);
  }
}

export function statsHandlers(stats: StatsCollector, containers: ContainerService, sandboxes: SandboxService): HandlerMap {
  return {
    async ContainerStats(req: { container_id?: string }) {
      const r = containers.mustGet(checkIdOrPrefix(req.container_id, 'container_id'));
      return { stats: await stats.containerStats(r) };
    },
    async ListContainerStats(req: { filter?: { id?: string; pod_sandbox_id?: string; label_selector?: Record<string, string> } | null }) {
      const f = req.filter;
      if (f?.id && !/^[a-f0-9]{1,64}$/.test(f.id)) return { stats: [] };
      if (f?.pod_sandbox_id && !/^[a-f0-9]{1,64}$/.test(f.pod_sandbox_id)) return { stats: [] };
      const records = containers.list({ id: f?.id || undefined, sandboxId: f?.pod_sandbox_id || undefined, labels: checkStringMap(f?.label_selector, 'filter.label_selector') });
      return { stats: await Promise.all(records.map((r) => stats.containerStats(r))) };
    },
    async PodSandboxStats(req: { pod_sandbox_id?: string }) {
      const s = sandboxes.mustGet(checkIdOrPrefix(req.pod_sandbox_id, 'pod_sandbox_id'));
      return { stats: await stats.sandboxStats(s) };
    },
    async ListPodSandboxStats(req: { filter?: { id?: string; label_selector?: Record<string, string> } | null }) {
      const f = req.filter;
      if (f?.id && !/^[a-f0-9]{1,64}$/.test(f.id)) return { stats: [] };
      const records = sandboxes.list({ id: f?.id || undefined, labels: checkStringMap(f?.label_selector, 'filter.label_selector') });
      return { stats: await Promise.all(records.map((s) => stats.sandboxStats(s))) };
    },
  };
}
