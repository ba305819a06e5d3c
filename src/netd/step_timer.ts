/** Sums wall time per named step, for one debug line per setup or preparation. */
export class StepTimer {
  private last = process.hrtime.bigint();
  private readonly ms: Record<string, number> = {};

  mark(step: string): void {
    const now = process.hrtime.bigint();
    this.ms[step] = Math.round(((this.ms[step] ?? 0) + Number(now - this.last) / 1e6) * 100) / 100;
    this.last = now;
  }

  totals(): Record<string, number> {
    return { ...this.ms };
  }
}
