import type { Logger } from '../log.js';

/**
 * Progress lines for a running pull: bytes so far, total when known, percent, rate and ETA,
 * at most one line per interval (and never more often than the caller reports bytes).
 */

export interface ProgressFields {
  receivedBytes: number;
  totalBytes?: number;
  percent?: number;
  bytesPerSecond: number;
  etaSeconds?: number;
}

/** The numbers of one progress line. Pure. */
export function progressFields(received: number, total: number | undefined, elapsedMs: number): ProgressFields {
  const seconds = Math.max(elapsedMs / 1000, 0.001);
  const rate = received / seconds;
  const out: ProgressFields = { receivedBytes: received, bytesPerSecond: Math.round(rate) };
  if (total !== undefined && total > 0) {
    out.totalBytes = total;
    out.percent = Math.min(100, Math.floor((received * 100) / total));
    if (rate > 0) out.etaSeconds = Math.max(0, Math.round((total - received) / rate));
  }
  return out;
}

/** A callback that logs `message` with progress fields every `intervalMs`. */
export function progressLogger(
  log: Logger,
  context: Record<string, unknown>,
  intervalMs: number,
  message = 'image download progress',
  now: () => number = Date.now,
): (received: number, total: number | undefined) => void {
  const started = now();
  let last = started;
  return (received, total) => {
    const t = now();
    if (t - last < intervalMs) return;
    last = t;
    log.info({ ...context, ...progressFields(received, total, t - started) }, message);
  };
}
