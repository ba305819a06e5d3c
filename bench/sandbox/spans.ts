/**
 * Timing spans around methods of live objects, nested by async context, for the netd breakdown.
 * The bench wraps the collaborators of the product's NetworkManager at run time; src/ is unchanged.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { performance } from 'node:perf_hooks';

export interface SpanTotal {
  count: number;
  ms: number;
}

/** Span path ("setup > chain.add > CNI ADD bridge") → calls and summed time within one iteration. */
export type SpanTotals = Record<string, SpanTotal>;

export const PATH_SEPARATOR = ' > ';

export class SpanRecorder {
  private readonly context = new AsyncLocalStorage<string>();
  private current: SpanTotals = {};

  /**
   * Replaces `obj[method]` (an async method) with a timed wrapper. Throws when it is not a
   * function, so a renamed product member fails the probe instead of silently not being timed.
   */
  wrap(obj: object, method: string, label: string | ((args: unknown[]) => string)): void {
    const target = obj as Record<string, unknown>;
    const original = target[method];
    if (typeof original !== 'function') throw new Error(`cannot time ${method}: not a method of ${obj.constructor?.name ?? 'the object'}`);
    const recorder = this;
    target[method] = function timed(this: unknown, ...args: unknown[]) {
      const name = typeof label === 'function' ? label(args) : label;
      const parent = recorder.context.getStore();
      const path = parent === undefined ? name : `${parent}${PATH_SEPARATOR}${name}`;
      const started = performance.now();
      return recorder.context.run(path, async () => {
        try {
          return await (original as (...a: unknown[]) => Promise<unknown>).apply(this, args);
        } finally {
          const total = (recorder.current[path] ??= { count: 0, ms: 0 });
          total.count += 1;
          total.ms += performance.now() - started;
        }
      });
    };
  }

  /** The totals since the last take(), and a fresh start. */
  take(): SpanTotals {
    const out = this.current;
    this.current = {};
    return out;
  }
}

/**
 * Per-iteration totals → one row per path with the median time and calls per iteration, plus an
 * "(other)" row under every parent for its time not inside a child (negative when children ran
 * side by side). Rows come in tree order. Pure.
 */
export interface SpanRow {
  path: string;
  depth: number;
  name: string;
  calls: number;
  medianMs: number;
}

function medianOf(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function spanRows(iterations: readonly SpanTotals[]): SpanRow[] {
  const paths = new Set<string>();
  for (const it of iterations) for (const p of Object.keys(it)) paths.add(p);
  const children = (parent: string | undefined) =>
    [...paths].filter((p) => {
      const cut = p.lastIndexOf(PATH_SEPARATOR);
      return parent === undefined ? cut === -1 : cut !== -1 && p.slice(0, cut) === parent;
    });
  const rows: SpanRow[] = [];
  const visit = (path: string, depth: number) => {
    const cut = path.lastIndexOf(PATH_SEPARATOR);
    const name = cut === -1 ? path : path.slice(cut + PATH_SEPARATOR.length);
    const ms = iterations.map((it) => it[path]?.ms ?? 0);
    const calls = iterations.map((it) => it[path]?.count ?? 0);
    rows.push({ path, depth, name, calls: medianOf(calls), medianMs: medianOf(ms) });
    const kids = children(path).sort((a, b) => medianOf(iterations.map((it) => it[b]?.ms ?? 0)) - medianOf(iterations.map((it) => it[a]?.ms ?? 0)));
    for (const kid of kids) visit(kid, depth + 1);
    if (kids.length > 0) {
      const other = iterations.map((it) => (it[path]?.ms ?? 0) - kids.reduce((sum, k) => sum + (it[k]?.ms ?? 0), 0));
      rows.push({ path: `${path}${PATH_SEPARATOR}(other)`, depth: depth + 1, name: '(other)', calls: 1, medianMs: medianOf(other) });
    }
  };
  for (const root of children(undefined)) visit(root, 0);
  return rows;
}
