/**
 * One poll timer per interval shared by every console log pump: hundreds of VMs cost one timer,
 * not hundreds. Pumps use it as the safety net for missed or impossible fs.watch events.
 */
const pollGroups = new Map<number, { timer: NodeJS.Timeout; members: Set<() => void> }>();

export function joinPoll(intervalMs: number, tick: () => void): () => void {
  let group = pollGroups.get(intervalMs);
  if (group === undefined) {
    const members = new Set<() => void>();
    const timer = setInterval(() => {
      for (const member of members) member();
    }, intervalMs);
    timer.unref();
    group = { timer, members };
    pollGroups.set(intervalMs, group);
  }
  const g = group;
  g.members.add(tick);
  return () => {
    g.members.delete(tick);
    if (g.members.size === 0 && pollGroups.get(intervalMs) === g) {
      clearInterval(g.timer);
      pollGroups.delete(intervalMs);
    }
  };
}

/** Number of pumps on the shared poll timers (for tests and diagnostics). */
export function sharedPollMembers(): number {
  let n = 0;
  for (const g of pollGroups.values()) n += g.members.size;
  return n;
}
