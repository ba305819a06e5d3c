/**
 * StopContainer: asks the guest to power off (ACPI) and destroys the VM when the grace period
 * runs out, so that the whole call, destroy included, is back within `timeoutSeconds` (kubelet's
 * grace period, critest's "stopping container"). A guest that ignores ACPI (a busybox or rescue
 * image) is normal: it is destroyed and exits 137.
 */
import { DomainShutdownFlags } from '../libvirt/client.js';
import { isActive } from '../libvirt/domain_ops.js';
import { domainOps, lookupDomain, mustGetContainer, type ContainerContext } from './context.js';
import { destroyUntilExited, watchExit } from './vm_exit.js';
import { markExited, type ShutoffWaiters } from './lifecycle_events.js';

/**
 * How long to wait for the guest's own power-off: until `deadlineMs`, less the margin kept for the
 * forced destroy. 0 or less: no time for ACPI, destroy at once. Pure.
 */
export function acpiGraceMs(deadlineMs: number, nowMs: number, destroyMarginMs: number): number {
  return deadlineMs - destroyMarginMs - nowMs;
}

/** 0 destroys at once. Succeeds for a container that is not running. */
export async function stopContainer(ctx: ContainerContext, shutoffs: ShutoffWaiters, idOrPrefix: string, timeoutSeconds: number): Promise<void> {
  // The caller's clock starts now: waiting for the lock counts against its timeout too.
  const deadlineMs = ctx.clock.monotonicMs() + timeoutSeconds * 1000;
  const r = mustGetContainer(ctx, idOrPrefix);
  await ctx.locks.run(r.id, async () => {
    const current = ctx.store.get(r.id)!;
    if (current.state !== 'RUNNING') return;
    const ops = domainOps(ctx);
    const dom = await lookupDomain(ctx, current);
    let graceful = false;
    if (dom && (await isActive(ops, dom))) {
      const graceMs = acpiGraceMs(deadlineMs, ctx.clock.monotonicMs(), ctx.destroyMarginMs);
      if (timeoutSeconds > 0 && graceMs > 0) {
        const off = shutoffs.wait(current.domainName, graceMs);
        // QEMU quits at the guest's power-off; libvirt's STOPPED event can trail it by seconds.
        const watching = new AbortController();
        const exited = watchExit(ctx, current.domainName, graceMs, watching.signal);
        try {
          await ops.shutdown(dom, DomainShutdownFlags.ACPI_POWER_BTN);
          graceful = await Promise.race([off.done, exited]);
        } catch (err) {
          ctx.logger.warn({ err, containerId: r.id }, 'ACPI shutdown request failed; destroying');
        } finally {
          off.cancel();
          watching.abort();
        }
      }
      if (!graceful) await destroyUntilExited(ctx, dom);
    }
    await markExited(ctx, r.id, graceful ? { exitCode: 0, reason: 'Completed' } : { exitCode: 137, reason: 'Error', message: 'VM destroyed after the stop timeout' });
  });
}
