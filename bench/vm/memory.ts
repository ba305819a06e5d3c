/**
 * Daemon memory per running VM (pure): serve's and netd's VmRSS read at a baseline with no VM,
 * with 1..N VMs running, and after all were removed.
 */

/** "A few hundred KiB" per running VM, taken as at most this. */
export const PER_VM_TARGET_KIB = 512;

export interface RssPoint {
  /** VMs running when the reading was taken. */
  runningVms: number;
  serveKiB?: number;
  netdKiB?: number;
}

export interface Growth {
  /** Least-squares slope of RSS over running VMs, baseline included: KiB per VM. */
  slopeKiB: number;
  /** (RSS with the most VMs - baseline) / that many VMs. */
  endpointKiB: number;
  /** RSS after every VM was removed - baseline: what the daemon kept. */
  retainedKiB: number;
}

/** Slope of the least-squares line through (x, y); NaN with fewer than two distinct x. Pure. */
export function leastSquaresSlope(points: readonly { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const p of points) {
    sxy += (p.x - mx) * (p.y - my);
    sxx += (p.x - mx) ** 2;
  }
  return sxx === 0 ? NaN : sxy / sxx;
}

/** Growth of one process's RSS (`key`), from a baseline, readings with VMs running, and the reading after removal. Pure. */
export function rssGrowth(key: 'serveKiB' | 'netdKiB', baseline: RssPoint, running: readonly RssPoint[], after: RssPoint | undefined): Growth {
  const base = baseline[key];
  const pts = [baseline, ...running]
    .filter((p) => p[key] !== undefined)
    .map((p) => ({ x: p.runningVms, y: p[key]! }));
  const top = [...running].filter((p) => p[key] !== undefined && p.runningVms > 0).sort((a, b) => b.runningVms - a.runningVms)[0];
  return {
    slopeKiB: leastSquaresSlope(pts),
    endpointKiB: base === undefined || top === undefined ? NaN : (top[key]! - base) / top.runningVms,
    retainedKiB: base === undefined || after?.[key] === undefined ? NaN : after[key]! - base,
  };
}

export function growthVerdict(g: Growth): 'PASS' | 'MISS' | '-' {
  if (!Number.isFinite(g.slopeKiB)) return '-';
  return g.slopeKiB <= PER_VM_TARGET_KIB ? 'PASS' : 'MISS';
}
