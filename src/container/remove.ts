/** RemoveContainer: idempotent; removes a running container forcibly; an unknown id is already removed. */
import { rm } from 'node:fs/promises';
import { destroyIfActive, undefineFully } from '../libvirt/domain_ops.js';
import { domainOps, lookupDomain, resolveContainer, type ContainerContext } from './context.js';
import { warmQmpPath } from './layout.js';
import { destroySettled } from './vm_exit.js';

export async function removeContainer(ctx: ContainerContext, idOrPrefix: string): Promise<void> {
  const id = resolveContainer(ctx, idOrPrefix);
  if (id === undefined) return;
  await ctx.locks.run(id, async () => {
    const r = ctx.store.get(id);
    if (!r) return;
    // A StopContainer's destroy may still be finishing in libvirt (vm_exit.ts): undefine after it.
    await destroySettled(ctx, r.domainName);
    const dom = await lookupDomain(ctx, r);
    if (dom) {
      await destroyIfActive(domainOps(ctx), dom);
      await undefineFully(domainOps(ctx), dom);
    }
    await ctx.consoles.stop(id);
    // The pump's saved position lives in r.dir and goes with it.
    await rm(r.dir, { recursive: true, force: true });
    if (r.warm) await rm(warmQmpPath(ctx.qmpDir, id), { force: true });
    await ctx.store.delete(id);
    ctx.byKey.delete(r.key);
    ctx.byDomain.delete(r.domainName);
  });
}
