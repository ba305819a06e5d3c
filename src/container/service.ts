/**
 * Containers are VMs: a qcow2 overlay over the image, a cloud-init seed, and a libvirt domain.
 * serve keeps a record per container; libvirt's lifecycle events keep its state current. Every
 * call is idempotent and every multi-step call rolls back what it did when a step fails.
 *
 * This is the facade the CRI handlers call; each verb lives in a file of its own (create.ts,
 * start.ts, stop.ts, remove.ts, update.ts, reconcile.ts, lifecycle_events.ts; the warm path in
 * warm/), over the state they share (context.ts).
 */
import { mkdir } from 'node:fs/promises';
import { FailedPreconditionError } from '../errors.js';
import { filterRecords, type RecordFilter } from '../store/record_filter.js';
import type { DomainRef } from '../libvirt/client.js';
import { containerContext, domainOps, lookupDomain, mustGetContainer, resolveContainer, type ContainerContext, type ContainerDeps } from './context.js';
import { createContainer, type ContainerSpec } from './create.js';
import { startContainer } from './start.js';
import { stopContainer } from './stop.js';
import { removeContainer } from './remove.js';
import { updateContainerResources } from './update.js';
import { reconcileContainers } from './reconcile.js';
import { ShutoffWaiters, onLifecycleEvent } from './lifecycle_events.js';
import { settleAll } from './vm_exit.js';
import type { ContainerRecord, ContainerResources, ContainerState } from './records.js';

export type { ContainerSpec } from './create.js';
export type { ContainerDeps } from './context.js';

export interface ContainerFilter extends RecordFilter<ContainerState> {
  sandboxId?: string;
}

export class ContainerService {
  private readonly ctx: ContainerContext;
  private readonly shutoffs: ShutoffWaiters;

  constructor(stateDir: string, deps: ContainerDeps) {
    this.ctx = containerContext(stateDir, deps);
    this.shutoffs = new ShutoffWaiters(this.ctx);
  }

  async load(): Promise<void> {
    const { ctx } = this;
    await mkdir(ctx.dataDir, { recursive: true, mode: 0o700 });
    await ctx.store.load();
    for (const r of ctx.store.values()) {
      ctx.byKey.set(r.key, r.id);
      ctx.byDomain.set(r.domainName, r.id);
    }
    ctx.libvirt.onLifecycle((ev) => onLifecycleEvent(ctx, this.shutoffs, ev));
    // Events are not replayed after a reconnect: look at every domain again.
    ctx.libvirt.onConnected(() => {
      void this.reconcile().catch((err) => ctx.logger.error({ err }, 'reconcile after libvirt reconnect failed'));
    });
  }

  resolve(idOrPrefix: string): string | undefined {
    return resolveContainer(this.ctx, idOrPrefix);
  }

  mustGet(idOrPrefix: string): ContainerRecord {
    return mustGetContainer(this.ctx, idOrPrefix);
  }

  get(id: string): ContainerRecord | undefined {
    return this.ctx.store.get(id);
  }

  list(filter: ContainerFilter = {}): ContainerRecord[] {
    const id = filter.id ? this.resolve(filter.id) : undefined;
    if (filter.id && id === undefined) return [];
    const sandboxId = filter.sandboxId ? this.ctx.sandboxes.resolve(filter.sandboxId) : undefined;
    if (filter.sandboxId && sandboxId === undefined) return [];
    return filterRecords(this.ctx.store.values(), { ...filter, id }, (r) => sandboxId === undefined || r.sandboxId === sandboxId);
  }

  create(spec: ContainerSpec): Promise<string> {
    return createContainer(this.ctx, spec);
  }

  start(idOrPrefix: string): Promise<void> {
    return startContainer(this.ctx, idOrPrefix);
  }

  /**
   * Asks the guest to power off (ACPI) and destroys it in time for the whole call to end within
   * `timeoutSeconds`; 0 destroys at once. Succeeds for a container that is not running.
   */
  stop(idOrPrefix: string, timeoutSeconds: number): Promise<void> {
    return stopContainer(this.ctx, this.shutoffs, idOrPrefix, timeoutSeconds);
  }

  /** Idempotent: removes a running container forcibly; an unknown id is already removed. */
  remove(idOrPrefix: string): Promise<void> {
    return removeContainer(this.ctx, idOrPrefix);
  }

  async stopAllOf(sandboxId: string): Promise<void> {
    await this.ctx.pool?.release(sandboxId);
    for (const r of this.list({ sandboxId })) await this.stop(r.id, 0);
  }

  async removeAllOf(sandboxId: string): Promise<void> {
    await this.ctx.pool?.release(sandboxId);
    for (const r of this.list({ sandboxId })) await this.remove(r.id);
  }

  /** RunPodSandbox's side of the warm pool: the netns of a warm VM to adopt, if one is idle. */
  claimWarmNetns(sandboxId: string): string | undefined {
    return this.ctx.pool?.claim(sandboxId);
  }

  async releaseWarm(sandboxId: string): Promise<void> {
    await this.ctx.pool?.release(sandboxId);
  }

  /** StopPodSandbox's side: whether the sandbox has an unused warm VM to give back (see WarmPool.holdForReturn). */
  holdWarmForReturn(sandboxId: string): boolean {
    return this.ctx.pool?.holdForReturn(sandboxId) ?? false;
  }

  /** Back to the pool when netd made its netns warm again, destroyed otherwise. */
  async finishWarmReturn(sandboxId: string, netnsRewarmed: boolean): Promise<void> {
    await this.ctx.pool?.finishReturn(sandboxId, netnsRewarmed);
  }

  /** Makes every record change so far durable (daemon shutdown). */
  flush(): Promise<void> {
    return this.ctx.syncBehind.flush();
  }

  /** Waits for the destroys and removals left in the background (vm_exit.ts; daemon shutdown). */
  settle(): Promise<void> {
    return settleAll(this.ctx);
  }

  async reopenLog(idOrPrefix: string): Promise<void> {
    const r = this.mustGet(idOrPrefix);
    if (r.state !== 'RUNNING') throw new FailedPreconditionError(`container ${r.id} is not running`);
    await this.ctx.consoles.reopen(r.id);
  }

  async domainXml(r: ContainerRecord): Promise<string | undefined> {
    const dom = await lookupDomain(this.ctx, r);
    return dom ? domainOps(this.ctx).getXmlDesc(dom) : undefined;
  }

  domainRef(r: ContainerRecord): Promise<DomainRef | undefined> {
    return lookupDomain(this.ctx, r);
  }

  updateResources(idOrPrefix: string, resources: ContainerResources): Promise<void> {
    return updateContainerResources(this.ctx, idOrPrefix, resources);
  }

  /** See reconcile.ts: records and libvirt in line after a start or a reconnect. */
  reconcile(): Promise<void> {
    return reconcileContainers(this.ctx);
  }
}
