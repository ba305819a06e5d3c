/**
 * Pod sandboxes: the records serve keeps, and the calls to netd that build and tear down their
 * networks. Every step is idempotent, so a Stop or Remove after a crash finishes the job.
 */
import { randomBytes } from 'node:crypto';
import { RecordStore } from '../store/record_store.js';
import { SyncBehind } from '../store/sync_behind.js';
import type { VmNetwork } from '../network/types.js';
import { NotFoundError, FailedPreconditionError, errorText, VmletError, Code } from '../errors.js';
import type { Logger } from '../log.js';
import type { NetdClient } from '../netd/client.js';
import type { SetupParams } from '../netd/protocol.js';
import { NETD_ANNOTATIONS } from '../network/cni/capabilities.js';
import { resolveId } from '../store/id_index.js';
import { nowNs } from '../clock.js';
import { sandboxKey, type SandboxRecord } from './records.js';
import { KeyedLock } from '../store/keyed_lock.js';
import { faultPoint } from '../fault_points.js';
import { filterRecords, type RecordFilter } from '../store/record_filter.js';

export interface SandboxSpec {
  metadata: SandboxRecord['metadata'];
  hostname: string;
  logDirectory: string;
  runtimeHandler: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  dns: SandboxRecord['dns'];
  portMappings: SandboxRecord['portMappings'];
}

export type SandboxFilter = RecordFilter<SandboxRecord['state']>;

/** The netd call the sandbox side makes (NetdClient; a fake in tests). */
export type NetdCalls = Pick<NetdClient, 'call'>;

/** Hooks for the container side: the sandbox must stop/remove its VM before its network goes. */
export interface SandboxContainerHooks {
  stopContainersOf(sandboxId: string): Promise<void>;
  removeContainersOf(sandboxId: string): Promise<void>;
  /** The netns of a warm VM the new sandbox adopts (see src/container/warm/pool.ts), if one is idle. */
  claimWarmNetns?(sandboxId: string): string | undefined;
  /** Discards the warm VM claimed for a sandbox whose build failed. */
  releaseWarm?(sandboxId: string): Promise<void>;
  /** Keeps the warm VM a stopping sandbox claimed and never used from being adopted; true when there is one. */
  holdWarmForReturn?(sandboxId: string): boolean;
  /** That VM back to the pool (its netns is warm again) or destroyed. */
  finishWarmReturn?(sandboxId: string, netnsRewarmed: boolean): Promise<void>;
}

export class SandboxService {
  private readonly store: RecordStore<SandboxRecord>;
  private readonly syncBehind: SyncBehind;
  private readonly byKey = new Map<string, string>();
  /** RunPodSandbox calls in progress by key, so concurrent duplicates share one build. */
  private readonly building = new Map<string, Promise<string>>();
  /** Serializes operations per sandbox id. */
  private readonly locks = new KeyedLock();
  /** Warm VMs going back to the pool after their sandboxes' Stop replied (returnWarmLater). */
  private readonly warmReturns = new Set<Promise<void>>();
  containerHooks: SandboxContainerHooks = { stopContainersOf: async () => {}, removeContainersOf: async () => {} };
  /** The node's pod CIDRs kubelet set (UpdateRuntimeConfig), for the CNI ipRanges capability. */
  podCidrs: () => string[] = () => [];

  constructor(
    dir: string,
    private readonly netd: NetdCalls,
    private readonly logger: Logger,
    private readonly netdTimeoutMs: number,
  ) {
    // Sandbox records describe network namespaces a reboot wipes: write-behind durability.
    this.syncBehind = new SyncBehind((err, path) => logger.error({ err, path }, 'could not make a sandbox record durable'));
    this.store = new RecordStore<SandboxRecord>(dir, logger, this.syncBehind);
  }

  async load(): Promise<void> {
    await this.store.load();
    for (const r of this.store.values()) this.byKey.set(r.key, r.id);
  }

  /** Full id from an id or unique prefix; undefined when unknown. */
  resolve(idOrPrefix: string): string | undefined {
    return resolveId(idOrPrefix, this.store.ids(), 'sandbox');
  }

  get(id: string): SandboxRecord | undefined {
    return this.store.get(id);
  }

  mustGet(idOrPrefix: string): SandboxRecord {
    const id = this.resolve(idOrPrefix);
    const r = id === undefined ? undefined : this.store.get(id);
    if (!r) throw new NotFoundError(`pod sandbox ${idOrPrefix} not found`);
    return r;
  }

  list(filter: SandboxFilter = {}): SandboxRecord[] {
    const id = filter.id ? this.resolve(filter.id) : undefined;
    if (filter.id && id === undefined) return [];
    return filterRecords(this.store.values(), { ...filter, id });
  }

  async run(spec: SandboxSpec): Promise<string> {
    const key = sandboxKey(spec.metadata);
    // A duplicate of a Run still building gets its answer when the build is done, not before.
    const inFlight = this.building.get(key);
    if (inFlight) return inFlight;
    const existing = this.byKey.get(key);
    if (existing !== undefined) return existing;
    const build = this.build(key, spec).finally(() => this.building.delete(key));
    this.building.set(key, build);
    return build;
  }

  private build(key: string, spec: SandboxSpec): Promise<string> {
    const id = randomBytes(32).toString('hex');
    // Held through the build, so a netd event about this sandbox waits until it is READY.
    return this.locks.run(id, () => this.buildLocked(id, key, spec));
  }

  private async buildLocked(id: string, key: string, spec: SandboxSpec): Promise<string> {
    const record: SandboxRecord = {
      id,
      key,
      ...spec,
      state: 'NOTREADY',
      createdAtNs: nowNs().toString(),
      pendingCleanup: 'network setup in progress',
    };
    // Persist before any work: a crash in the middle leaves a record that Stop/Remove can finish.
    await this.store.put(record);
    // Before anything is made for it: whatever a crash leaves can be traced to this id.
    this.logger.info({ sandboxId: id, pod: `${spec.metadata.namespace}/${spec.metadata.name}`, uid: spec.metadata.uid, attempt: spec.metadata.attempt }, 'pod sandbox created; setting up its network');
    faultPoint('sandbox.run.after-record');
    this.byKey.set(key, id);
    const params: SetupParams = {
      sandboxId: id,
      podName: spec.metadata.name,
      podNamespace: spec.metadata.namespace,
      podUid: spec.metadata.uid,
      hostname: spec.hostname,
      dns: spec.dns,
      portMappings: spec.portMappings,
    };
    // Only the annotations netd reads, and only when the pod has some: an additive wire change.
    const netdAnnotations = NETD_ANNOTATIONS.filter((k) => spec.annotations[k] !== undefined);
    if (netdAnnotations.length > 0) params.annotations = Object.fromEntries(netdAnnotations.map((k) => [k, spec.annotations[k]!]));
    const podCidrs = this.podCidrs();
    if (podCidrs.length > 0) params.podCidrs = podCidrs;
    const warmNetns = this.containerHooks.claimWarmNetns?.(id);
    if (warmNetns !== undefined) params.netnsName = warmNetns;
    try {
      const result = await this.netd.call('setup', params, this.netdTimeoutMs);
      faultPoint('sandbox.run.after-network');
      await this.store.put({ ...record, state: 'READY', netnsPath: result.netnsPath, podIps: result.podIps, pendingCleanup: undefined });
      return id;
    } catch (err) {
      await this.containerHooks.releaseWarm?.(id).catch((e: unknown) => this.logger.error({ err: e, sandboxId: id }, 'could not discard the warm VM of a failed sandbox'));
      await this.rollbackFailedBuild(record, err);
      throw err;
    }
  }

  /** netd undoes its own partial work; this makes sure of it and forgets the sandbox. */
  private async rollbackFailedBuild(record: SandboxRecord, cause: unknown): Promise<void> {
    try {
      await this.netd.call('teardown', { sandboxId: record.id }, this.netdTimeoutMs);
      await this.store.delete(record.id);
      this.byKey.delete(record.key);
    } catch (err) {
      // Keep the record so a later Stop/Remove (kubelet retries them) finishes the cleanup.
      this.logger.error({ err, sandboxId: record.id, cause: errorText(cause) }, 'rollback of a failed sandbox did not finish');
      await this.store.put({ ...record, pendingCleanup: `rollback failed: ${errorText(err)}` }).catch(() => {});
    }
  }

  /**
   * Stops the sandbox's VMs and, at the same time, tears its network down; replies when both are
   * done. A warm VM it claimed and never used goes
   * back to the pool with its netns instead of being destroyed: once netd unwired it and ran
   * CNI DEL, nothing of the sandbox is left in that netns, and it is the pool's. Making it warm
   * again (rewarmNetns) is then the pool's work, done after the reply (see returnWarmLater).
   */
  async stop(idOrPrefix: string): Promise<void> {
    const record = this.mustGet(idOrPrefix);
    await this.locks.run(record.id, async () => {
      const { containerHooks: hooks } = this;
      const returningWarm = hooks.holdWarmForReturn?.(record.id) ?? false;
      let keptNetns: string | undefined;
      try {
        const containersStopped = hooks.stopContainersOf(record.id).then(() => faultPoint('sandbox.stop.after-containers'));
        const current = this.store.get(record.id);
        if (!current) return await containersStopped;
        // The network goes while the VMs end (QEMU's exit, 15-450 ms under load), not after: the
        // reply still waits for both. netd first takes the veth off the VM's bridge, so a VM
        // still running for those milliseconds is cut off before CNI DEL gives its address back.
        const network = this.netd.call('teardown', { sandboxId: record.id, ...(returningWarm ? { keepWarmNetns: true } : {}) }, this.netdTimeoutMs);
        const [containers, torn] = await Promise.allSettled([containersStopped, network]);
        if (torn.status === 'rejected') {
          const err: unknown = torn.reason;
          await this.store.put({ ...current, state: 'NOTREADY', pendingCleanup: `network teardown failed: ${errorText(err)}` });
          if (containers.status === 'rejected') throw containers.reason;
          throw err instanceof VmletError ? err : new VmletError(Code.INTERNAL, errorText(err));
        }
        keptNetns = torn.value.keptNetns;
        // The network is gone but a VM may not be: the sandbox is not ready, and a retry stops it.
        if (containers.status === 'rejected') {
          await this.store.put({ ...current, state: 'NOTREADY', podIps: undefined, pendingCleanup: `stopping its containers failed: ${errorText(containers.reason)}` });
          throw containers.reason;
        }
        await this.store.put({ ...current, state: 'NOTREADY', podIps: undefined, notReadyReason: undefined, pendingCleanup: undefined });
      } finally {
        if (returningWarm && keptNetns !== undefined) this.returnWarmLater(record.id, keptNetns);
        else if (returningWarm) await hooks.finishWarmReturn!(record.id, false);
      }
    });
  }

  /**
   * The unused warm VM of a stopped sandbox and its kept netns, back to the pool after the reply:
   * netd prewires the netns anew (or deletes it when it cannot, and the VM is destroyed). The
   * sandbox's network is already gone; only the pool waits for this (settle() at shutdown).
   */
  private returnWarmLater(sandboxId: string, netnsName: string): void {
    const done = (async () => {
      let rewarmed = false;
      try {
        rewarmed = (await this.netd.call('rewarmNetns', { netnsName }, this.netdTimeoutMs)).rewarmed;
      } catch (err) {
        this.logger.warn({ err, sandboxId, netns: netnsName }, 'a returned warm netns could not be made warm again');
      }
      await this.containerHooks.finishWarmReturn!(sandboxId, rewarmed);
    })()
      .catch((err: unknown) => this.logger.error({ err, sandboxId }, 'could not give an unused warm VM back to the pool'))
      .finally(() => this.warmReturns.delete(done));
    this.warmReturns.add(done);
  }

  /** Waits for the warm VMs being given back after their sandboxes stopped (daemon shutdown, before the pool closes). */
  async settle(): Promise<void> {
    while (this.warmReturns.size > 0) await Promise.all([...this.warmReturns]);
  }

  /** Idempotent: an unknown id has nothing left to remove. */
  async remove(idOrPrefix: string): Promise<void> {
    const id = this.resolve(idOrPrefix);
    if (id === undefined) return;
    const record = this.store.get(id)!;
    if (record.state === 'READY' || record.podIps || record.pendingCleanup) await this.stop(id);
    await this.locks.run(id, async () => {
      await this.containerHooks.removeContainersOf(id);
      faultPoint('sandbox.remove.after-containers');
      await this.store.delete(id);
      this.byKey.delete(record.key);
    });
  }

  /**
   * Waits for the sandbox's VM side (interfaces wired, DHCP serving) and returns it. When netd
   * could not prepare it, the sandbox goes NOTREADY (kubelet then replaces the pod's sandbox)
   * and this throws FAILED_PRECONDITION with netd's reason.
   */
  async vmNetwork(id: string): Promise<VmNetwork> {
    const result = await this.netd.call('vmNetwork', { sandboxId: id }, this.netdTimeoutMs);
    if (result.ready) return result.network;
    // Not awaited: the caller may hold a container lock that a Stop holding this sandbox's lock
    // waits for (StartContainer against StopPodSandbox).
    this.onVmSideFailed(id, result.message);
    throw new FailedPreconditionError(`the network of pod sandbox ${id} could not be prepared for its VM: ${result.message}`);
  }

  /**
   * The sandbox's VM network as soon as netd has planned it, before the wiring is done: enough
   * to describe the network (cloud-init), and, when `tapsReady` (TAPs made in advance in a warm
   * netns), for QEMU to open its TAPs. A failure is handled as in vmNetwork.
   */
  async vmNetworkPlan(id: string): Promise<{ network: VmNetwork; tapsReady: boolean }> {
    const result = await this.netd.call('vmNetworkPlan', { sandboxId: id }, this.netdTimeoutMs);
    if (result.ready) return { network: result.network, tapsReady: result.tapsReady };
    this.onVmSideFailed(id, result.message);
    throw new FailedPreconditionError(`the network of pod sandbox ${id} could not be prepared for its VM: ${result.message}`);
  }

  /** netd's report that a sandbox's VM side failed (prepared while nobody waited): NOTREADY now. */
  onVmSideFailed(id: string, message: string): void {
    this.markNotReady(id, message).catch((err: unknown) => this.logger.error({ err, sandboxId: id }, 'could not mark a sandbox NOTREADY'));
  }

  private async markNotReady(id: string, reason: string): Promise<void> {
    await this.locks.run(id, async () => {
      const current = this.store.get(id);
      if (current?.state === 'READY') await this.store.put({ ...current, state: 'NOTREADY', notReadyReason: reason });
    });
  }

  /** Makes every record change so far durable (daemon shutdown). */
  flush(): Promise<void> {
    return this.syncBehind.flush();
  }

  /** netd's view of the sandbox's network; `check`: after a CNI CHECK of its networks (verbose status). */
  async networkStatus(id: string, check = false): Promise<unknown> {
    return this.netd.call('status', { sandboxId: id, ...(check ? { check } : {}) }, this.netdTimeoutMs);
  }
}

