/** The filter every CRI list call shares: by id, by state, by all labels of a selector. */
export interface RecordFilter<S> {
  id?: string;
  state?: S;
  labels?: Record<string, string>;
}

export function matchesLabels(labels: Record<string, string>, selector: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/** `id` must already be resolved to a full id; `extra` adds a kind-specific condition. */
export function filterRecords<S, R extends { id: string; state: S; labels: Record<string, string> }>(
  records: Iterable<R>,
  filter: RecordFilter<S>,
  extra: (r: R) => boolean = () => true,
): R[] {
  const out: R[] = [];
  for (const r of records) {
    if (filter.id !== undefined && r.id !== filter.id) continue;
    if (filter.state !== undefined && r.state !== filter.state) continue;
    if (filter.labels && !matchesLabels(r.labels, filter.labels)) continue;
    if (!extra(r)) continue;
    out.push(r);
  }
  return out;
}
