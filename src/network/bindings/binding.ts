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
 *      half-built wiring, on one already undone, and when the netns is gone.
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
  unwire(ctx: BindingContext, state: S): Promise<void>;
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
