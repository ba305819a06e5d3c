/**
 * UpdateContainerResources below the CRI layer: a VM's memory can shrink (never grow past what it
 * was created with) and its cputune change, live when it runs and in its definition either way.
 */
import { FailedPreconditionError, errorText } from '../errors.js';
import type { DomainRef } from '../libvirt/client.js';
import { DomainAffect } from '../libvirt/client.js';
import { schedulerParams } from '../libvirt/scheduler_params.js';
import { domainOps, lookupDomain, mustGetContainer, type ContainerContext } from './context.js';
import { cputuneFor } from './domain_spec_builder.js';
import type { ContainerRecord, ContainerResources } from './records.js';

export async function updateContainerResources(ctx: ContainerContext, idOrPrefix: string, wanted: ContainerResources): Promise<void> {
  const r = mustGetContainer(ctx, idOrPrefix);
  await ctx.locks.run(r.id, async () => {
    const current = ctx.store.get(r.id)!;
    if (current.state === 'EXITED') throw new FailedPreconditionError(`container ${r.id} has exited`);
    const dom = await lookupDomain(ctx, current);
    if (!dom) throw new FailedPreconditionError(`libvirt domain ${current.domainName} is gone`);
    await applyResources(ctx, dom, current, wanted);
    await ctx.store.put({ ...current, resources: { ...current.resources, ...wanted } });
  });
}

async function applyResources(ctx: ContainerContext, dom: DomainRef, r: ContainerRecord, wanted: ContainerResources): Promise<void> {
  const client = domainOps(ctx);
  const running = r.state === 'RUNNING';
  const affect = running ? DomainAffect.LIVE | DomainAffect.CONFIG : DomainAffect.CONFIG;
  if (wanted.memoryLimitInBytes && BigInt(wanted.memoryLimitInBytes) !== BigInt(r.vm.memoryBytes)) {
    const kib = (BigInt(wanted.memoryLimitInBytes) + 1023n) / 1024n;
    if (kib * 1024n > BigInt(r.vm.memoryBytes)) {
      throw new FailedPreconditionError(`memory of a VM can shrink but not grow past the ${r.vm.memoryBytes} bytes it was created with`);
    }
    await apply('memory', () => client.setMemoryFlags(dom, kib, affect));
  }
  const params = schedulerParams(cputuneFor(wanted));
  if (params.length > 0) await apply('CPU tuning', () => client.setSchedulerParametersFlags(dom, params, affect));
}

async function apply(what: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    throw new FailedPreconditionError(`libvirt cannot change the VM's ${what}: ${errorText(err)}`);
  }
}
