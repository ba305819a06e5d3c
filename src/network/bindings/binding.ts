/**
 * How one CNI interface of a pod reaches its VM. A binding turns the interface CNI left in the pod
 * netns into something QEMU can use (a TAP on a bridge today; a VF handed over as a PCI device or a
 * masqueraded TAP later) and back.
 *
 * The protocol, built so a crash at any point can be undone:
 *   1. `plan` reads the interface and decides everything (names, MACs, what to restore) without
 *      changing anything. netd persists the returned state before step 2.
 *   2. `wire` applies the plan. On failure it undoes its own partial work before rethrowing.
 *   3. `unwire` takes the persisted state back to what CNI left. Idempotent: it succeeds on a
 *      half-built wiring, on one already undone, and when the netns is gone. With
 *      `netnsLeaving` (a sandbox teardown: the netns is deleted, or emptied and prewired anew,
 *      right after CNI DEL), a binding may leave in the netns what it made there and only CNI
 *      knows nothing of (bridge, TAP, its own nft table): only the CNI interface must be back.
 * The state is plain JSON, so it survives netd restarts; `kind` says which binding owns it (the
 * states and the context are in types.ts, below every binding).
 */
import type { InterfaceSnapshot } from './snapshot.js';
import type { BindingContext, WiredInterface, WiredInterfaceBase } from './types.js';

export interface NetworkBinding<S extends WiredInterfaceBase = WiredInterface> {
  readonly kind: S['kind'];
  /**
   * Decides the wiring without changing anything. `snapshot` is the interface as read just before
   * (netd already has it from choosing the binding); without it the binding reads it itself.
   */
  plan(ctx: BindingContext, snapshot?: InterfaceSnapshot): Promise<S>;
  /** Applies a plan from `plan`; returns the state to persist (the VM side is in `state.vm`). */
  wire(ctx: BindingContext, planned: S): Promise<S>;
  /** Undoes `state`; see the protocol above. */
  unwire(ctx: BindingContext, state: S, options?: UnwireOptions): Promise<void>;
}

export interface UnwireOptions {
  /**
   * The netns leaves the sandbox once CNI DEL is done: deleted (the kernel frees what is left in
   * it, off the caller's path), or, for a warm netns, emptied of everything but `lo` and prewired
   * again (WarmNetns.rewarm). Deleting a link or an nft table waits for an RCU grace period
   * (30-140 ms measured for a bridge and a TAP); a deletion the netns does anyway is not repeated.
   */
  netnsLeaving?: boolean;
}

/**
 * Runs plan → persist → wire → persist for one interface. `persist` must make the state durable
 * before it resolves: a plan that is not on disk cannot be undone after a crash.
 */
export async function bindInterface<S extends WiredInterfaceBase>(
  binding: NetworkBinding<S>,
  ctx: BindingContext,
  persist: (state: S) => Promise<void>,
  snapshot?: InterfaceSnapshot,
): Promise<S> {
  const planned = await binding.plan(ctx, snapshot);
  await persist(planned);
  const wired = await binding.wire(ctx, planned);
  if (wired !== planned) await persist(wired);
  return wired;
}
