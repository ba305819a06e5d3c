/**
 * The profile daemon's span records (serve_spans.ts) summarised per root call (pure): for each
 * span path the median time per call of the root, calls per root call, and when it ran (median
 * start and end, ms from the root's start), so steps that overlap (the DHCP wait beside the disk
 * work) show as overlapping. Each parent gets a "(not in a timed step)" row: its time minus its
 * timed children's (negative when children ran side by side).
 */
import { median } from '../lib/stats.js';
import type { RootSpanRecord } from './span_record.js';

export const SEPARATOR = ' > ';
export const UNTIMED = '(not in a timed step)';

export interface SpanRow {
  path: string;
  depth: number;
  /** Median over root calls of the summed time of this path in one call. */
  medianMs: number;
  /** Median calls of this path per root call. */
  calls: number;
  /** Median first start and last end, ms from the root's start (undefined for UNTIMED rows). */
  startMs?: number;
  endMs?: number;
}

export interface RootSummary {
  root: string;
  /** Root calls summarised (after the skipped warm-up ones). */
  n: number;
  failed: number;
  medianMs: number;
  rows: SpanRow[];
}

function parentOf(path: string): string {
  const i = path.lastIndexOf(SEPARATOR);
  return i < 0 ? '' : path.slice(0, i);
}

/** Summaries per root name, in first-seen order, skipping the first `skip` calls of each root (warm-up). Pure. */
export function summarizeSpans(records: readonly RootSpanRecord[], skip: number): RootSummary[] {
  const byRoot = new Map<string, RootSpanRecord[]>();
  for (const r of records) {
    const list = byRoot.get(r.root) ?? [];
    list.push(r);
    byRoot.set(r.root, list);
  }
  const out: RootSummary[] = [];
  for (const [root, all] of byRoot) {
    const calls = all.slice(skip).filter((r) => r.ok);
    const failed = all.slice(skip).length - calls.length;
    const paths = new Set<string>();
    for (const r of calls) for (const p of Object.keys(r.spans)) paths.add(p);
    const stat = (path: string) => ({
      ms: median(calls.map((r) => r.spans[path]?.[1] ?? 0)),
      calls: median(calls.map((r) => r.spans[path]?.[0] ?? 0)),
      start: median(calls.filter((r) => r.spans[path]).map((r) => r.spans[path]![2])),
      end: median(calls.filter((r) => r.spans[path]).map((r) => r.spans[path]![3])),
    });
    const children = new Map<string, string[]>();
    for (const p of paths) {
      const parent = parentOf(p);
      children.set(parent, [...(children.get(parent) ?? []), p]);
    }
    const untimed = (parent: string) =>
      median(
        calls.map((r) => {
          const own = parent === '' ? r.durMs : (r.spans[parent]?.[1] ?? 0);
          const kids = (children.get(parent) ?? []).reduce((sum, k) => sum + (r.spans[k]?.[1] ?? 0), 0);
          return own - kids;
        }),
      );
    const rows: SpanRow[] = [];
    const visit = (parent: string, depth: number) => {
      const kids = (children.get(parent) ?? []).map((p) => ({ p, s: stat(p) })).sort((a, b) => a.s.start - b.s.start || a.p.localeCompare(b.p));
      for (const { p, s } of kids) {
        rows.push({ path: p, depth, medianMs: s.ms, calls: s.calls, startMs: s.start, endMs: s.end });
        if (children.has(p)) visit(p, depth + 1);
      }
      if (kids.length > 0) rows.push({ path: parent ? `${parent}${SEPARATOR}${UNTIMED}` : UNTIMED, depth, medianMs: untimed(parent), calls: 0 });
    };
    visit('', 0);
    out.push({ root, n: calls.length, failed, medianMs: median(calls.map((r) => r.durMs)), rows });
  }
  return out;
}

/** Parses the span file's lines; malformed lines are skipped. Pure. */
export function parseSpanLines(text: string): RootSpanRecord[] {
  const out: RootSpanRecord[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const r = JSON.parse(line) as RootSpanRecord;
      if (typeof r.root === 'string' && typeof r.durMs === 'number' && r.spans && typeof r.spans === 'object') out.push(r);
    } catch {
      // A torn last line (the daemon was killed mid-write) is not a record.
    }
  }
  return out;
}
