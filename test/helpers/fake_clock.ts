/**
 * A clock whose time moves only when nothing else can: FakeClock.run(p) lets microtasks and I/O
 * progress, and whenever `p` is still pending and a timer is due next, jumps to that timer.
 * So a 60 s grace period takes no real time, and the call log carries virtual times.
 */
import type { Clock } from '../../src/clock.js';

interface Timer {
  at: number;
  seq: number;
  fire: () => void;
}

/** 2023-11-14T22:13:20Z: records' timestamps are this plus the virtual time. */
const EPOCH_NS = 1_700_000_000_000_000_000n;

export class FakeClock implements Clock {
  private now = 0;
  private seq = 0;
  private readonly timers = new Set<Timer>();

  nowNs(): bigint {
    return EPOCH_NS + BigInt(Math.round(this.now * 1000)) * 1000n;
  }

  monotonicMs(): number {
    return this.now;
  }

  sleep(ms: number): { done: Promise<void>; cancel(): void } {
    let timer!: Timer;
    const done = new Promise<void>((resolve) => {
      timer = { at: this.now + Math.max(0, ms), seq: this.seq++, fire: resolve };
    });
    this.timers.add(timer);
    return { done, cancel: () => void this.timers.delete(timer) };
  }

  /** Drives `p` to its end, advancing virtual time to the next timer whenever `p` waits for one. */
  async run<T>(p: Promise<T>): Promise<T> {
    let settled = false;
    p.then(
      () => (settled = true),
      () => (settled = true),
    );
    while (!settled) {
      // Twice: an fs callback may schedule the next step behind one turn.
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      if (settled) break;
      const next = [...this.timers].sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!next) continue; // real I/O still running
      this.timers.delete(next);
      this.now = Math.max(this.now, next.at);
      next.fire();
    }
    return p;
  }
}
