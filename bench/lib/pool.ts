/** Runs fn(0..count-1) with at most `concurrency` in flight. */

export class InterruptedError extends Error {
  constructor() {
    super('interrupted');
  }
}

/**
 * Results in index order. After the first failure (or an abort) no new index starts; the calls in
 * flight finish, then the first failure (or InterruptedError) is thrown.
 */
export async function pool<T>(count: number, concurrency: number, signal: AbortSignal, fn: (index: number) => Promise<T>): Promise<T[]> {
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency ${concurrency} must be a positive integer`);
  const results: T[] = new Array<T>(count);
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async () => {
    while (failure === undefined && !signal.aborted && next < count) {
      const index = next++;
      try {
        results[index] = await fn(index);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  if (failure !== undefined) throw failure.err;
  if (signal.aborted) throw new InterruptedError();
  return results;
}
