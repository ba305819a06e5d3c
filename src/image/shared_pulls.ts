/**
 * Concurrent pulls of one name share one download. A caller's signal cancels only its own wait,
 * until it is the last caller: then the download is cancelled, and its promise settles only once
 * the download has cleaned up (its temp file is gone). A new pull of the name meanwhile starts
 * afresh instead of joining the dying one.
 */
import { CancelledError } from '../errors.js';

interface SharedPull<T> {
  promise: Promise<T>;
  controller: AbortController;
  waiters: number;
}

export class SharedPulls<T> {
  private readonly running = new Map<string, SharedPull<T>>();

  /** @param copy gives each caller its own copy of the result. */
  constructor(private readonly copy: (result: T) => T) {}

  /**
   * Waits for the pull of `key`, starting it with `start` when none runs. `what` names the pull in
   * the CancelledError a caller whose `signal` fires gets.
   */
  join(key: string, start: (signal: AbortSignal) => Promise<T>, what: string, signal: AbortSignal | undefined): Promise<T> {
    let shared = this.running.get(key);
    if (!shared) {
      shared = this.start(key, start);
      this.running.set(key, shared);
    }
    return this.await(shared, key, what, signal);
  }

  /** Cancels every pull and waits until they have cleaned up. */
  async cancelAll(reason: Error): Promise<void> {
    const pulls = [...this.running.values()];
    for (const p of pulls) p.controller.abort(reason);
    await Promise.allSettled(pulls.map((p) => p.promise));
  }

  private start(key: string, start: (signal: AbortSignal) => Promise<T>): SharedPull<T> {
    const controller = new AbortController();
    const promise = start(controller.signal).finally(() => {
      if (this.running.get(key) === shared) this.running.delete(key);
    });
    const shared: SharedPull<T> = { controller, waiters: 0, promise };
    // Callers may all have left; the outcome is then nobody's to observe.
    promise.catch(() => {});
    return shared;
  }

  private await(shared: SharedPull<T>, key: string, what: string, signal: AbortSignal | undefined): Promise<T> {
    shared.waiters++;
    return new Promise<T>((resolvePull, rejectPull) => {
      let settled = false;
      const onAbort = (): void => {
        if (settled) return;
        settled = true;
        shared.waiters--;
        const cancelled = new CancelledError(`pull of ${what} cancelled`);
        if (shared.waiters > 0) {
          rejectPull(cancelled);
          return;
        }
        // Last one out stops the download and returns only once its temp file is gone; a new
        // pull of the same name starts afresh instead of joining the dying one.
        if (this.running.get(key) === shared) this.running.delete(key);
        shared.controller.abort(cancelled);
        shared.promise.then(
          () => rejectPull(cancelled),
          () => rejectPull(cancelled),
        );
      };
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      shared.promise.then(
        (result) => {
          if (settled) return;
          settled = true;
          shared.waiters--;
          signal?.removeEventListener('abort', onAbort);
          resolvePull(this.copy(result));
        },
        (err: unknown) => {
          if (settled) return;
          settled = true;
          shared.waiters--;
          signal?.removeEventListener('abort', onAbort);
          rejectPull(err);
        },
      );
    });
  }
}
