/** StartContainer: a cold VM's domain starts; a warm VM, paused before its first instruction, resumes. */
import { FailedPreconditionError } from '../errors.js';
import { domainOps, mustGetContainer, mustLookupDomain, type ContainerContext } from './context.js';
import { resumeWarm } from './warm/adopt.js';
import { faultPoint } from '../fault_points.js';

export async function startContainer(ctx: ContainerContext, idOrPrefix: string): Promise<void> {
  const r = mustGetContainer(ctx, idOrPrefix);
  await ctx.locks.run(r.id, async () => {
    const current = ctx.store.get(r.id)!;
    if (current.state === 'RUNNING') return;
    if (current.state !== 'CREATED') throw new FailedPreconditionError(`container ${r.id} is ${current.state}; only a created container can start`);
    const sandbox = ctx.sandboxes.get(current.sandboxId);
    if (!sandbox || sandbox.state !== 'READY') throw new FailedPreconditionError(`pod sandbox ${current.sandboxId} is not ready`);
    // Also brings back a DHCP responder a netd restart could not restore.
    await ctx.sandboxes.vmNetwork(current.sandboxId);
    const pump = ctx.consoles.start(current);
    try {
      // The pump is running before the VM does, so a failed Start leaves no VM running.
      await pump;
      // A warm VM is already running QEMU, paused before its first instruction.
      if (current.warm) await resumeWarm(ctx, current);
      else await domainOps(ctx).create(await mustLookupDomain(ctx, current));
      faultPoint('container.start.after-domain-start');
    } catch (err) {
      await pump.catch(() => {});
      await ctx.consoles.stop(r.id).catch(() => {});
      throw err;
    }
    await ctx.store.put({ ...current, state: 'RUNNING', startedAtNs: ctx.clock.nowNs().toString() });
  });
}
