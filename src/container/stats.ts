/**
 * What a container's VM uses: CPU and memory from libvirt, disk from the overlay. The CPU rate
 * (nano-cores) is the change between two samples of the same container.
 */
import { join } from 'node:path';
import { errorText } from '../errors.js';
import type { Logger } from '../log.js';
import { systemClock, type Clock } from '../clock.js';
import type { DomainRef } from '../libvirt/client.js';
import type { DomainMetricsOps } from '../libvirt/domain_ops.js';
import { overlayUsage } from './disk.js';
import { OVERLAY } from './layout.js';
import type { ContainerRecord } from './records.js';

export interface ContainerUsage {
  timestampNs: bigint;
  cpuNs: bigint;
  /** Undefined on a container's first sample. */
  nanoCores: bigint | undefined;
  rssBytes: bigint;
  availableBytes: bigint;
  majorFaults: bigint;
  minorFaults: bigint;
  diskBytes: bigint;
  diskInodes: bigint;
}

interface CpuSample {
  cpuNs: bigint;
  atNs: bigint;
}

export interface StatsCollectorOptions {
  /** The container's domain, undefined when libvirt has none. */
  domainOf: (r: ContainerRecord) => Promise<DomainRef | undefined>;
  libvirt: { current(): DomainMetricsOps };
  logger: Logger;
  clock?: Clock;
}

export class StatsCollector {
  /** Previous CPU sample per container, so nanoCores is a rate between two calls. */
  private readonly lastCpu = new Map<string, CpuSample>();
  private readonly clock: Clock;

  constructor(private readonly options: StatsCollectorOptions) {
    this.clock = options.clock ?? systemClock;
  }

  async usage(r: ContainerRecord): Promise<ContainerUsage> {
    const timestampNs = this.clock.nowNs();
    let cpuNs = 0n;
    let rssBytes = 0n;
    let memoryBytes = BigInt(r.vm.memoryBytes);
    let majorFaults = 0n;
    let minorFaults = 0n;
    if (r.state === 'RUNNING') {
      try {
        const dom = await this.options.domainOf(r);
        if (dom) {
          const client = this.options.libvirt.current();
          const info = await client.getInfo(dom);
          cpuNs = info.cpuTimeNs;
          memoryBytes = info.memoryKiB * 1024n;
          const mem = await client.memoryStats(dom).catch(() => undefined);
          rssBytes = (mem?.rss ?? 0n) * 1024n;
          majorFaults = mem?.majorFault ?? 0n;
          minorFaults = mem?.minorFault ?? 0n;
        }
      } catch (err) {
        this.options.logger.debug({ err: errorText(err), containerId: r.id }, 'stats unavailable');
      }
    }
    const prev = this.lastCpu.get(r.id);
    this.lastCpu.set(r.id, { cpuNs, atNs: timestampNs });
    const nanoCores = prev && timestampNs > prev.atNs && cpuNs >= prev.cpuNs ? ((cpuNs - prev.cpuNs) * 1_000_000_000n) / (timestampNs - prev.atNs) : undefined;
    const disk = await overlayUsage(join(r.dir, OVERLAY));
    return {
      timestampNs,
      cpuNs,
      nanoCores,
      rssBytes,
      availableBytes: memoryBytes > rssBytes ? memoryBytes - rssBytes : 0n,
      majorFaults,
      minorFaults,
      diskBytes: disk.bytes,
      diskInodes: disk.inodes,
    };
  }

  forget(containerId: string): void {
    this.lastCpu.delete(containerId);
  }
}
