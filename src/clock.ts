/**
 * Time, behind a narrow interface so that deadlines (StopContainer's grace period) can be tested
 * against a fake clock. `systemClock` is the real one.
 */

export interface Clock {
  /** Wall-clock time in ns since the epoch (CRI timestamps). */
  nowNs(): bigint;
  /** Monotonic ms, for deadlines. */
  monotonicMs(): number;
  /** A timer: `done` resolves after `ms`, unless cancelled (then it never resolves). */
  sleep(ms: number): { done: Promise<void>; cancel(): void };
}

/** Wall-clock ns: Date's ms plus sub-ms digits from the monotonic clock (timestamps stay distinct). */
export function nowNs(): bigint {
  const ms = BigInt(Date.now());
  const sub = process.hrtime.bigint() % 1_000_000n;
  return ms * 1_000_000n + sub;
}

export const systemClock: Clock = {
  nowNs,
  monotonicMs: () => performance.now(),
  sleep(ms) {
    let timer: NodeJS.Timeout | undefined;
    const done = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
    return { done, cancel: () => clearTimeout(timer) };
  },
};
