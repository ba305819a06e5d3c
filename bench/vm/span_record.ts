/** What the profile daemon's span preload (serve_spans.ts) writes, one JSON line per finished root call. */

/** The preload writes to the file this environment variable names. */
export const SPANS_FILE_ENV = 'VMLET_BENCH_SPANS_FILE';

/** One finished root call: per span path, [calls, summed ms, first start, last end] (ms from the root's start). */
export interface RootSpanRecord {
  root: string;
  /** Epoch ms when the root call began. */
  startedAt: number;
  durMs: number;
  ok: boolean;
  spans: Record<string, [number, number, number, number]>;
}

/** The span around LibvirtClient.create (the report compares it with the libvirt floor). */
export const LIBVIRT_START_SPAN = 'libvirt start (domain create)';
