/**
 * RemoveContainer: idempotent; removes a running container forcibly; an unknown id is already
 * removed. After a StopContainer whose libvirt destroy is still finishing, the record goes at
 * once and the domain and the VM's files right after that destroy (vm_exit.ts).
 */
import { rm } from 'node:fs/promises';
import { destroyIfActive, undefineFully } from '../libvirt/domain_ops.js';
import { domainOps, lookupDomain, resolveContainer, type ContainerContext } from './context.js';
import { warmQmpPath } from './layout.js';
import { afterPendingDestroy } from './vm_exit.js';
import { deviceOwnersDir, returnDevice } from './block_devices/device_owner.js';

export async function removeContainer(ctx: ContainerContext, idOrPrefix: string): Promise<void> {
  const id = resolveContainer(ctx, idOrPrefix);
  if (id === undefined) return;
  await ctx.locks.run(id, async () => {
    const r = ctx.store.get(id);
    if (!r) return;
    // The pump's saved position lives in r.dir and goes with it.
    await ctx.consoles.stop(id);
    const removeVm = async () => {
      const dom = await lookupDomain(ctx, r);
      if (dom) {
        await destroyIfActive(domainOps(ctx), dom);
        await undefineFully(domainOps(ctx), dom);
      }
      // QEMU is gone: its volumes can be unmounted (they are not in r.dir, which goes recursively).
      await ctx.volumes?.release(id);
      await rm(r.dir, { recursive: true, force: true });
      // A persistent root device keeps its contents; only its node's owner goes back.
      if (r.persistentRoot) await returnDevice(deviceOwnersDir(ctx.dataDir), r.persistentRoot.device, id);
      if (r.warm) await rm(warmQmpPath(ctx.qmpDir, id), { force: true });
    };
    // QEMU exited at StopContainer, libvirt's destroy is still waiting for the reap (vm_exit.ts):
    // the domain and files go right after it, not awaited here.
    if (!afterPendingDestroy(ctx, r.domainName, removeVm)) await removeVm();
    await ctx.store.delete(id);
    ctx.byKey.delete(r.key);
    ctx.byDomain.delete(r.domainName);
  });
}
