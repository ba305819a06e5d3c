/**
 * libvirt's lifecycle events as container state: a VM that stops on its own makes its container
 * EXITED, and a StopContainer waiting for SHUTOFF wakes up (waitForShutoff: events first, polling
 * as a backstop for an event lost to a reconnect).
 */
import type { LifecycleEvent } from '../libvirt/client.js';
import { DomainEvent, DomainEventStoppedDetail, DomainState, isNoDomain } from '../libvirt/client.js';
import { domainOps, type ContainerContext } from './context.js';

const SHUTOFF_POLL_MS = 1000;

export interface ExitOutcome {
  exitCode: number;
  reason: string;
  message?: string;
}

/** Records the container's end once: its console pump drains, then the record says EXITED. */
export async function markExited(ctx: ContainerContext, id: string, outcome: ExitOutcome): Promise<void> {
  const r = ctx.store.get(id);
  if (!r || r.state === 'EXITED') return;
  await ctx.consoles.stop(id).catch((err) => ctx.logger.warn({ err, containerId: id }, 'console pump stop failed'));
  // QEMU is gone: its block devices go back to their owners (a failure leaves the grant record
  // for RemoveContainer and reconcile to retry).
  await ctx.blockDevices?.grants.restore(id).catch((err: unknown) => ctx.logger.error({ err, containerId: id }, 'could not give block devices back'));
  await ctx.store.put({
    ...r,
    state: 'EXITED',
    finishedAtNs: ctx.clock.nowNs().toString(),
    exitCode: outcome.exitCode,
    reason: outcome.reason,
    ...(outcome.message ? { message: outcome.message } : {}),
  });
}

/** Stops waiting for domains to reach SHUTOFF (StopContainer), by domain name. */
export class ShutoffWaiters {
  private readonly waiters = new Map<string, Set<() => void>>();

  constructor(private readonly ctx: ContainerContext) {}

  /** The domain stopped (an event): every wait on it ends with true. */
  wake(domainName: string): void {
    for (const wake of this.waiters.get(domainName) ?? []) wake();
  }

  /** Resolves true when the domain stops within `ms`, false otherwise (or when cancelled). */
  wait(domainName: string, ms: number): { done: Promise<boolean>; cancel(): void } {
    let finish: (v: boolean) => void = () => {};
    const done = new Promise<boolean>((resolve) => (finish = resolve));
    const waiters = this.waiters.get(domainName) ?? new Set();
    this.waiters.set(domainName, waiters);
    const wake = () => finish(true);
    waiters.add(wake);
    const deadline = this.ctx.clock.sleep(ms);
    void deadline.done.then(() => finish(false));
    let poll = this.ctx.clock.sleep(SHUTOFF_POLL_MS);
    const onPoll = (): void => {
      const ops = domainOps(this.ctx);
      void ops
        .lookupByName(domainName)
        .then((dom) => ops.getState(dom))
        .then((s) => s.state === DomainState.SHUTOFF && finish(true))
        .catch((err) => isNoDomain(err) && finish(true));
      poll = this.ctx.clock.sleep(SHUTOFF_POLL_MS);
      void poll.done.then(onPoll);
    };
    void poll.done.then(onPoll);
    void done.then(() => {
      deadline.cancel();
      poll.cancel();
      waiters.delete(wake);
      if (waiters.size === 0) this.waiters.delete(domainName);
    });
    return { done, cancel: () => finish(false) };
  }
}

/** The lifecycle handler ContainerService registers with libvirt. */
export function onLifecycleEvent(ctx: ContainerContext, shutoffs: ShutoffWaiters, ev: LifecycleEvent): void {
  const id = ctx.byDomain.get(ev.domain.name);
  if (id === undefined) return;
  if (ev.event !== DomainEvent.STOPPED && ev.event !== DomainEvent.CRASHED) return;
  shutoffs.wake(ev.domain.name);
  const r = ctx.store.get(id);
  // A stop in progress records its own outcome.
  if (!r || r.state !== 'RUNNING' || ctx.locks.held(id)) return;
  const clean = ev.event === DomainEvent.STOPPED && ev.detail === DomainEventStoppedDetail.SHUTDOWN;
  void ctx.locks
    .run(id, () => markExited(ctx, id, clean ? { exitCode: 0, reason: 'Completed' } : { exitCode: 1, reason: 'Error', message: `VM stopped (libvirt event ${ev.event}, detail ${ev.detail})` }))
    .catch((err) => ctx.logger.error({ err, containerId: id }, 'could not record a VM exit'));
}
