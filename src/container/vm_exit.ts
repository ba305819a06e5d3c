/**
 * Ending a VM as fast as the host allows, with libvirt left consistent: libvirt's destroy is asked
 * for as always, and the caller goes on once QEMU has exited, not when libvirt's answer comes
 * (up to 2 s later on a host whose PID 1 reaps orphans late: see src/libvirt/qemu_process.ts).
 * The destroy still in flight is kept per domain (pendingDestroys), and whatever touches that
 * domain next (RemoveContainer's undefine) is chained behind it, so libvirt sees the calls in the
 * order it always did (destroy, undefine, then the VM's files go), only not awaited by the reply.
 */
import type { DomainRef } from '../libvirt/client.js';
import { destroyIfActive } from '../libvirt/domain_ops.js';
import type { QemuProcess } from '../libvirt/qemu_process.js';
import { domainOps, type ContainerContext } from './context.js';

/** How long to watch QEMU for its exit before waiting for libvirt's answer instead. */
const EXIT_WATCH_MS = 10_000;

/**
 * Destroys `dom` if it is active and returns once its QEMU has exited (or libvirt has answered,
 * whichever comes first). A destroy that fails before QEMU exited throws; one that fails after is
 * logged (QEMU is dead: libvirt's bookkeeping is what failed, and the next call on the domain
 * sees it). Without a way to watch QEMU (no QemuProcesses, no pid), this is destroyIfActive.
 */
export async function destroyUntilExited(ctx: ContainerContext, dom: DomainRef): Promise<void> {
  const proc = await findQemu(ctx, dom.name);
  const destroying = destroyIfActive(domainOps(ctx), dom);
  if (!proc) return destroying;
  const pending = destroying.then(
    () => undefined,
    () => undefined,
  );
  ctx.pendingDestroys.set(dom.name, pending);
  void pending.then(() => {
    if (ctx.pendingDestroys.get(dom.name) === pending) ctx.pendingDestroys.delete(dom.name);
  });
  const stopWatching = new AbortController();
  const exited = ctx.qemuProcesses!.waitForExit(proc, EXIT_WATCH_MS, stopWatching.signal);
  try {
    const first = await Promise.race([destroying.then(() => 'libvirt' as const), exited.then((yes) => (yes ? ('exited' as const) : ('timeout' as const)))]);
    if (first === 'timeout') await destroying;
    if (first === 'exited') {
      destroying.catch((err: unknown) => ctx.logger.error({ err, domain: dom.name }, 'libvirt destroy failed after QEMU had exited'));
    }
  } finally {
    stopWatching.abort();
  }
}

/**
 * Resolves when `domainName`'s QEMU has exited or `timeoutMs` passed (true: exited). For a
 * graceful stop: the guest powered off, QEMU quit, and libvirt's STOPPED event is still to come.
 * Never resolves when QEMU cannot be watched (the caller races it with that event).
 */
export async function watchExit(ctx: ContainerContext, domainName: string, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
  const proc = await findQemu(ctx, domainName);
  if (!proc) return new Promise(() => {});
  return ctx.qemuProcesses!.waitForExit(proc, timeoutMs, signal);
}

/**
 * When a destroy destroyUntilExited left is still in flight for the domain, chains `work` (the
 * undefine and file removal of a RemoveContainer) behind it, in the background, and returns true;
 * settleAll() waits for it, and a failure is logged (the next reconcile collects what is left:
 * a domain of this owner without a record). False, with nothing done, when none is in flight.
 */
export function afterPendingDestroy(ctx: ContainerContext, domainName: string, work: () => Promise<void>): boolean {
  const pending = ctx.pendingDestroys.get(domainName);
  if (!pending) return false;
  const next = pending
    .then(work)
    .catch((err: unknown) => ctx.logger.error({ err, domain: domainName }, 'removing a domain after its destroy failed'))
    .finally(() => {
      if (ctx.pendingDestroys.get(domainName) === next) ctx.pendingDestroys.delete(domainName);
    });
  ctx.pendingDestroys.set(domainName, next);
  return true;
}

/** Waits until every destroy and removal left in the background is done (daemon shutdown, tests). */
export async function settleAll(ctx: ContainerContext): Promise<void> {
  while (ctx.pendingDestroys.size > 0) await Promise.all([...ctx.pendingDestroys.values()]);
}

async function findQemu(ctx: ContainerContext, domainName: string): Promise<QemuProcess | undefined> {
  if (!ctx.qemuProcesses) return undefined;
  try {
    return await ctx.qemuProcesses.find(domainName);
  } catch (err) {
    ctx.logger.warn({ err, domain: domainName }, 'cannot find the QEMU process of a domain; waiting for libvirt instead');
    return undefined;
  }
}
