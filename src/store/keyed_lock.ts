/** Serializes async operations per key (a sandbox or container id); different keys run in parallel. */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(fn);
    this.tails.set(key, next);
    try {
      return await next;
    } finally {
      if (this.tails.get(key) === next) this.tails.delete(key);
    }
  }

  /** Whether an operation on `key` is running or queued. */
  held(key: string): boolean {
    return this.tails.has(key);
  }
}
