/**
 * The CNI CHECK report of each sandbox, reused while it is young. A verbose PodSandboxStatus asks
 * for a CHECK (CNI lets a runtime CHECK whenever it wants), and a client polling `crictl inspectp`
 * would otherwise run every plugin of every network on each poll. So a verbose status gets the
 * last report when it is younger than CNI_CHECK_MIN_AGE_MS and the sandbox's network is still the
 * one it judged; calls that come while a CHECK runs wait for that one instead of starting another.
 */
import type { CniCheckReport } from './protocol.js';

/**
 * How old a report may be and still answer a verbose status. 10 s: well under kubelet's 1 min
 * PLEG relist and any sensible --cni-check-interval, so a status is never much staler than a
 * fresh CHECK would be, while a poll every second costs one CHECK per 10 polls.
 */
export const CNI_CHECK_MIN_AGE_MS = 10_000;

export interface CniCheckCacheDeps {
  /** CHECK of the sandbox's networks now; undefined when there is nothing to check (no ADD done, or torn down meanwhile). */
  run(sandboxId: string): Promise<CniCheckReport | undefined>;
  /**
   * What the sandbox's network is now, as a string that changes whenever a CHECK could judge it
   * differently (e.g. an interface the VM side took over); undefined when it has none.
   */
  networkOf(sandboxId: string): string | undefined;
  /** Monotonic ms. */
  nowMs(): number;
}

interface Entry {
  report: CniCheckReport;
  atMs: number;
  network: string;
}

interface InFlight {
  network: string;
  done: Promise<CniCheckReport | undefined>;
}

export class CniCheckCache {
  private readonly entries = new Map<string, Entry>();
  /** The CHECK running for each sandbox; delete() drops it, so its report is not stored. */
  private readonly inFlight = new Map<string, InFlight>();

  constructor(private readonly deps: CniCheckCacheDeps) {}

  /** The last report of the sandbox, however old (a status without CHECK shows it). */
  get(sandboxId: string): CniCheckReport | undefined {
    return this.entries.get(sandboxId)?.report;
  }

  /**
   * A report of the sandbox's network no older than `maxAgeMs`: the stored one when it is young
   * enough and of the same network, else the CHECK in flight for that network, else a new CHECK.
   */
  report(sandboxId: string, maxAgeMs: number): Promise<CniCheckReport | undefined> {
    const network = this.deps.networkOf(sandboxId);
    if (network === undefined) return Promise.resolve(undefined);
    const entry = this.entries.get(sandboxId);
    if (entry && entry.network === network && this.deps.nowMs() - entry.atMs < maxAgeMs) return Promise.resolve(entry.report);
    const running = this.inFlight.get(sandboxId);
    if (running && running.network === network) return running.done;
    const startedMs = this.deps.nowMs();
    const done = this.deps.run(sandboxId).then(
      (report) => {
        // Stored only when no delete() came meanwhile and the network is still the one checked.
        if (this.settle(sandboxId, flight) && report && this.deps.networkOf(sandboxId) === network) {
          this.entries.set(sandboxId, { report, atMs: startedMs, network });
        }
        return report;
      },
      (err: unknown) => {
        this.settle(sandboxId, flight);
        throw err;
      },
    );
    const flight: InFlight = { network, done };
    this.inFlight.set(sandboxId, flight);
    return done;
  }

  /** The sandbox's network is gone or made anew: forget its report and any CHECK in flight. */
  delete(sandboxId: string): void {
    this.entries.delete(sandboxId);
    this.inFlight.delete(sandboxId);
  }

  /** `flight` is over; whether it was still the sandbox's current CHECK. */
  private settle(sandboxId: string, flight: InFlight): boolean {
    if (this.inFlight.get(sandboxId) !== flight) return false;
    this.inFlight.delete(sandboxId);
    return true;
  }
}
