/** What the GC probe (gc_probe.ts, loaded in the daemon) and the bench share: no side effects. */

/** The directory the probe writes to, passed in the daemon's environment. */
export const GC_DIR_ENV = 'VMLET_BENCH_GC_DIR';

/** What the probe writes after a collection: process.memoryUsage() in bytes. */
export interface GcProbeReading {
  pid: number;
  /** Epoch ms when the collection finished. */
  at: number;
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}
