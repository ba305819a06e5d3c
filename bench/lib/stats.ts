/** Summary statistics of latency samples (milliseconds). Pure. */

export interface Summary {
  n: number;
  median: number;
  p95: number;
  min: number;
  max: number;
  mean: number;
}

function sorted(samples: readonly number[]): number[] {
  for (const s of samples) {
    if (!Number.isFinite(s)) throw new RangeError(`sample ${s} is not a finite number`);
  }
  return [...samples].sort((a, b) => a - b);
}

/** The middle value; the mean of the two middle values for an even count. */
export function median(samples: readonly number[]): number {
  const s = sorted(samples);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * Nearest-rank percentile: the smallest sample with at least p% of the samples at or below it.
 * No interpolation, so it is always a value that was measured (p95 of 20 samples is the 19th).
 */
export function percentile(samples: readonly number[], p: number): number {
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile ${p} must be in (0, 100]`);
  const s = sorted(samples);
  if (s.length === 0) return NaN;
  return s[Math.ceil((p / 100) * s.length) - 1]!;
}

export function summarize(samples: readonly number[]): Summary {
  const s = sorted(samples);
  if (s.length === 0) return { n: 0, median: NaN, p95: NaN, min: NaN, max: NaN, mean: NaN };
  return {
    n: s.length,
    median: median(s),
    p95: percentile(s, 95),
    min: s[0]!,
    max: s[s.length - 1]!,
    mean: s.reduce((a, b) => a + b, 0) / s.length,
  };
}

/** Samples rounded to microseconds: plenty for millisecond latencies, and the JSON stays readable. */
export function roundSamples(samples: readonly number[]): number[] {
  return samples.map((s) => Math.round(s * 1000) / 1000);
}
