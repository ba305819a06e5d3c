/**
 * The VM side of a sandbox's network, once CNI ADD is done: plan every interface's binding,
 * persist the plans, wire them, then start the DHCP responder. It runs at once when someone waits
 * for it (`network`, from CreateContainer; `plan`, for the cloud-init seed) or when the sandbox
 * adopted a warm netns (its VM is about to come), otherwise as soon as netd is idle, so a burst of
 * RunPodSandbox calls is not slowed by the work of the ones before. A failure is reported to serve
 * as a `vmSideFailed` event. A teardown drops a pending preparation and waits for a running one,
 * so it never races a half-done wiring.
 */
import { FailedPreconditionError, errorText } from '../errors.js';
import type { Logger } from '../log.js';
import type { NetworkBinding, UnwireOptions } from '../network/bindings/binding.js';
import type { BindingSelector } from '../network/bindings/select.js';
import { readInterfaceSnapshot } from '../network/bindings/snapshot.js';
import type { BindingContext, MasqueradeRequest, WiredInterface } from '../network/bindings/types.js';
import { leasesFor } from '../network/dhcp/leases.js';
import type { IpRunner } from '../network/iproute.js';
import { ipv6ServicesFor } from '../network/ipv6/services.js';
import { POD_IFNAME } from '../network/names.js';
import type { VmInterface, VmNetwork } from '../network/types.js';
import { vmNetworkOf } from '../network/vm_network.js';
import type { DhcpResponders } from './dhcp_responders.js';
import type { NetdEvent, SandboxNetworkStatus, VmNetworkPlanResult, VmNetworkResult } from './protocol.js';
import type { SandboxNetworkRecord, SandboxNetworkRecords } from './records.js';
import { StepTimer } from './step_timer.js';
import { runUndos, type Undo } from './undo.js';
import { faultPoint } from '../fault_points.js';

/**
 * How long netd must have had no setup or teardown in flight before it prepares a VM side that
 * nobody waits for yet.
 */
const IDLE_BEFORE_PREPARE_MS = 25;

/** The VM's network as decided before the wiring is done, and whether its TAPs exist already. */
type Plan = { network: VmNetwork; tapsReady: boolean };

export interface VmSideDeps {
  records: SandboxNetworkRecords;
  ip: IpRunner;
  selector: BindingSelector;
  dhcp: DhcpResponders;
  logger: Logger;
  notify: (event: NetdEvent) => void;
  /** --dhcp-lease-time; the default when unset. */
  leaseSeconds?: number;
}

export class VmSide {
  /** Preparations in progress, and why the last one of a sandbox failed. */
  private readonly preparing = new Map<string, Promise<void>>();
  private readonly failures = new Map<string, string>();
  /** The plan of each preparation in progress (see plan()), and who waits for one. */
  private readonly plans = new Map<string, Plan>();
  private readonly planWaiters = new Map<string, Set<() => void>>();
  /** Preparations to start once netd is idle, and what keeps it from being idle. */
  private readonly deferred = new Map<string, SandboxNetworkRecord>();
  private foregroundCalls = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  /** After close(): no preparation starts (one scheduled for a warm sandbox may still fire). */
  private closed = false;
  /** Sandboxes whose teardown is running: nothing may be (re)built for them meanwhile. */
  private readonly tearingDown = new Set<string>();

  constructor(private readonly deps: VmSideDeps) {}

  /** Runs a setup or teardown; while any runs, netd is not idle. */
  async inForeground<T>(work: () => Promise<T>): Promise<T> {
    this.foregroundCalls++;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    try {
      return await work();
    } finally {
      this.foregroundCalls--;
      this.armIdleTimer();
    }
  }

  /**
   * A sandbox's CNI ADD is done. On a warm netns it is about to get its VM (a warm one waits for
   * it): its VM side starts now, after the setup reply is on its way (the first spawn of the
   * preparation blocks the event loop). Any other waits until netd is idle.
   */
  afterSetup(record: SandboxNetworkRecord): void {
    if (record.prewired) setImmediate(() => void this.begin(record));
    else this.defer(record);
  }

  /**
   * A restarted netd found `record` (CNI ADD done, netns there): bring back what its VM side had,
   * its DHCP responder, or, when a previous netd stopped in the middle of preparing it, the preparation.
   */
  restore(record: SandboxNetworkRecord): void {
    if (!record.network) {
      this.deps.logger.warn({ sandboxId: record.id }, 'VM side of a sandbox was not ready when netd stopped; preparing it again');
      this.defer(record);
      return;
    }
    // Wired already: this only brings the DHCP responder back; a failure reaches serve as an event.
    if (needsResponder(record)) void this.begin(record);
  }

  /**
   * The VM's network as planned (names, MACs, addresses, routes, DNS), as soon as it is decided:
   * before the wiring is done (network() waits for that). For what only describes the network,
   * such as the cloud-init seed. Starts the preparation if nothing has.
   */
  async plan(sandboxId: string): Promise<VmNetworkPlanResult> {
    const record = this.askable(sandboxId);
    if (record.network) return { ready: true, network: record.network, tapsReady: true };
    const known = this.plans.get(sandboxId);
    if (known) return { ready: true, ...known };
    const failure = this.preparing.has(sandboxId) ? undefined : this.failures.get(sandboxId);
    if (failure !== undefined) return { ready: false, message: failure };
    const preparation = this.preparing.get(sandboxId) ?? this.begin(record);
    let wake: () => void = () => {};
    const planned = new Promise<void>((resolve) => (wake = resolve));
    const waiters = this.planWaiters.get(sandboxId) ?? new Set<() => void>();
    this.planWaiters.set(sandboxId, waiters.add(wake));
    try {
      await Promise.race([planned, preparation]);
    } finally {
      waiters.delete(wake);
      if (waiters.size === 0 && this.planWaiters.get(sandboxId) === waiters) this.planWaiters.delete(sandboxId);
    }
    if (record.network) return { ready: true, network: record.network, tapsReady: true };
    const plan = this.plans.get(sandboxId);
    if (plan) return { ready: true, ...plan };
    return { ready: false, message: this.failures.get(sandboxId) ?? 'the VM side of the sandbox was not prepared' };
  }

  /**
   * Waits for the VM side of the sandbox and returns it, or why it could not be prepared. A lost
   * DHCP responder (netd restarted and could not bring it back) gets one more try here.
   */
  async network(sandboxId: string): Promise<VmNetworkResult> {
    for (let attempt = 0; ; attempt++) {
      const record = this.askable(sandboxId);
      // Someone waits for it now: no more waiting for netd to be idle.
      if (this.deferred.has(sandboxId)) void this.begin(record);
      await this.preparing.get(sandboxId);
      const failure = this.failures.get(sandboxId);
      if (failure !== undefined) return { ready: false, message: failure };
      const serving = !needsResponder(record) || this.deps.dhcp.get(sandboxId) !== undefined;
      if (record.network && serving) return { ready: true, network: record.network };
      if (attempt > 0) return { ready: false, message: 'the DHCP responder is not running' };
      void this.begin(record);
    }
  }

  /** What status() reports of the VM side. */
  statusOf(record: SandboxNetworkRecord): Omit<SandboxNetworkStatus, 'sandboxId' | 'netnsPath'> {
    const responder = this.deps.dhcp.get(record.id);
    const failure = this.failures.get(record.id);
    return {
      vmSide: this.stage(record),
      ...(failure !== undefined ? { error: failure } : {}),
      vmNetwork: record.network ?? null,
      interfaces: record.interfaces.map((w) => ({ ...w.state })),
      dhcp: responder ? { running: true, leases: record.leases.map((l) => ({ mac: l.mac, ip: l.ip })), stats: responder.stats() } : { running: false },
    };
  }

  /**
   * Runs a sandbox's teardown: from its start (before any await) nothing is prepared for the
   * sandbox and network()/plan() refuse it.
   */
  async whileTearingDown<T>(sandboxId: string, work: () => Promise<T>): Promise<T> {
    this.tearingDown.add(sandboxId);
    try {
      return await work();
    } finally {
      this.tearingDown.delete(sandboxId);
    }
  }

  /**
   * Undoes the VM side (inside whileTearingDown): drops a pending preparation, lets a running one
   * finish (or fail and undo itself), stops the DHCP responder and unwires every interface.
   * Idempotent; returns what failed.
   */
  async tearDown(sandboxId: string, record: SandboxNetworkRecord | undefined, steps?: StepTimer): Promise<string[]> {
    this.deferred.delete(sandboxId);
    await this.preparing.get(sandboxId);
    this.failures.delete(sandboxId);
    steps?.mark('preparing');
    await this.deps.dhcp.stop(sandboxId);
    steps?.mark('dhcpStop');
    // The netns is deleted, or emptied and prewired anew, once CNI DEL is done.
    const failures = record ? await this.unwireAll(record, { netnsLeaving: true }) : [];
    steps?.mark('unwire');
    return failures;
  }

  /** netd exiting: no preparation starts any more, and the running ones are done when this resolves. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.deferred.clear();
    // A preparation still running would start a DHCP responder after netd stopped them.
    await Promise.allSettled([...this.preparing.values()]);
  }

  private stage(record: SandboxNetworkRecord): SandboxNetworkStatus['vmSide'] {
    if (this.deferred.has(record.id)) return 'pending';
    if (this.preparing.has(record.id)) return 'preparing';
    if (this.failures.has(record.id)) return 'failed';
    return record.network ? 'ready' : 'not prepared';
  }

  /** The record of a sandbox whose VM side may be asked for: CNI ADD done, no teardown running. */
  private askable(sandboxId: string): SandboxNetworkRecord {
    const record = this.deps.records.get(sandboxId);
    if (!record?.cni) throw new FailedPreconditionError(`sandbox ${sandboxId} has no network`);
    if (this.tearingDown.has(sandboxId)) throw new FailedPreconditionError(`the network of sandbox ${sandboxId} is being torn down`);
    return record;
  }

  /** Queues the preparation of a sandbox whose CNI ADD is done, for when netd is idle. */
  private defer(record: SandboxNetworkRecord): void {
    this.deferred.set(record.id, record);
    this.armIdleTimer();
  }

  private armIdleTimer(): void {
    // One at a time: a call that arrives meanwhile waits for at most one preparation.
    if (this.idleTimer || this.preparing.size > 0 || this.foregroundCalls > 0 || this.deferred.size === 0) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      const [next] = this.deferred.values();
      if (next && this.foregroundCalls === 0) void this.begin(next);
    }, IDLE_BEFORE_PREPARE_MS);
  }

  /**
   * Starts preparing the VM side of a sandbox now, or joins the preparation already running;
   * resolves when done, failed or not. Never during its teardown.
   */
  private begin(record: SandboxNetworkRecord): Promise<void> {
    const running = this.preparing.get(record.id);
    if (running) return running;
    this.deferred.delete(record.id);
    if (this.tearingDown.has(record.id) || this.closed) return Promise.resolve();
    this.failures.delete(record.id);
    const preparing = this.prepare(record).then(
      () => void this.failures.delete(record.id),
      (err: unknown) => {
        const message = errorText(err);
        this.failures.set(record.id, message);
        this.deps.logger.error({ err, sandboxId: record.id }, 'VM side of a sandbox could not be prepared');
        this.deps.notify({ event: 'vmSideFailed', sandboxId: record.id, message });
      },
    );
    this.preparing.set(record.id, preparing);
    return preparing.finally(() => {
      // Done or failed: record.network (or the failure) answers from now on.
      this.plans.delete(record.id);
      if (this.preparing.get(record.id) === preparing) this.preparing.delete(record.id);
      this.armIdleTimer();
    });
  }

  /**
   * Wires every CNI interface for the VM and starts the DHCP responder. A wiring failure undoes
   * the wiring; CNI's part stays for the teardown. A restarted preparation first undoes whatever
   * an interrupted one had persisted.
   */
  private async prepare(record: SandboxNetworkRecord): Promise<void> {
    const { records, logger } = this.deps;
    const cni = record.cni!;
    const steps = new StepTimer();
    if (!record.network && record.interfaces.length > 0) {
      // What an interrupted preparation left; wiring over it would fail on the names.
      const failures = await this.unwireAll(record);
      if (failures.length > 0) throw new FailedPreconditionError(`cannot undo an interrupted wiring: ${failures.join('; ')}`);
      record.interfaces = [];
    }
    if (!record.network) {
      const undos: Undo[] = [];
      try {
        // Every interface is planned (and the plans persisted) before any is wired: the plan is
        // the VM's whole network description, which plan() hands out while wiring runs.
        const plans: { binding: NetworkBinding<WiredInterface>; context: BindingContext; planned: WiredInterface }[] = [];
        for (const [index, iface] of cni.interfaces.entries()) {
          const snapshot = await readInterfaceSnapshot(this.deps.ip, record.netnsName, iface.name);
          steps.mark('snapshot');
          const context: BindingContext = { netnsName: record.netnsName, netnsPath: record.netnsPath, sandboxId: record.id, index, cniInterface: iface };
          if (index === 0 && iface.name === POD_IFNAME && record.prewired) context.prewired = record.prewired;
          const masquerade = masqueradeAskedFor(record, index, iface.name);
          if (masquerade) context.masquerade = masquerade;
          const binding: NetworkBinding<WiredInterface> = await this.deps.selector.select(snapshot.link, context);
          plans.push({ binding, context, planned: await binding.plan(context, snapshot) });
        }
        // Persisted before anything changes, so a crash mid-wire can still be undone.
        record.interfaces = plans.map(({ context, planned }) => ({ context, state: planned }));
        await records.put(record);
        const pod = record.pod!;
        this.publishPlan(record.id, {
          network: vmNetworkOf(plans.map((p) => p.planned.vm), pod, cni.dns),
          tapsReady: plans.every((p) => p.planned.kind !== 'sriov' && p.planned.prewired === true),
        });
        steps.mark('plan');
        const vmInterfaces: VmInterface[] = [];
        for (const [slot, { binding, context, planned }] of plans.entries()) {
          const state = await binding.wire(context, planned);
          if (state !== planned) {
            record.interfaces[slot] = { context, state };
            await records.put(record);
          }
          undos.push({ what: `wire ${context.cniInterface.name}`, run: () => binding.unwire(context, state) });
          vmInterfaces.push(state.vm);
        }
        steps.mark('wire');
        faultPoint('netd.vm-side.after-wire');
        const network = vmNetworkOf(vmInterfaces, pod, cni.dns);
        record.leases = leasesFor(network, this.deps.leaseSeconds);
        record.network = network;
        try {
          await records.put(record);
        } catch (err) {
          // Not on disk, so not true in memory either: the undos below take the wiring back.
          record.leases = [];
          delete record.network;
          throw err;
        }
        steps.mark('record');
      } catch (err) {
        await runUndos(undos, logger, record.id, err);
        throw err;
      }
    }
    if (needsResponder(record)) await this.deps.dhcp.start(record.id, record.netnsPath, record.leases, ipv6Of(record));
    steps.mark('dhcp');
    logger.debug({ sandboxId: record.id, stepsMs: steps.totals() }, 'VM side of a sandbox prepared');
  }

  /** The plan of a preparation in progress becomes known: wake whoever waits for it. */
  private publishPlan(sandboxId: string, plan: Plan): void {
    this.plans.set(sandboxId, plan);
    for (const wake of this.planWaiters.get(sandboxId) ?? []) wake();
    this.planWaiters.delete(sandboxId);
  }

  /** Unwires every interface of the record (idempotent); returns what failed. */
  private async unwireAll(record: SandboxNetworkRecord, options: UnwireOptions = {}): Promise<string[]> {
    const failures: string[] = [];
    for (const { context, state } of [...record.interfaces].reverse()) {
      try {
        await this.deps.selector.forState(state).unwire(context, state, options);
      } catch (err) {
        failures.push(`unwire ${context.cniInterface.name}: ${errorText(err)}`);
      }
    }
    return failures;
  }
}

/**
 * What the pod asked of the masquerade binding for its interface at `index`: the pod annotation
 * for its default network's interface (the first), a Multus JSON element for that network's.
 */
function masqueradeAskedFor(record: SandboxNetworkRecord, index: number, ifName: string): MasqueradeRequest | undefined {
  const perNetwork = record.attachments?.find((a) => a.interfaces?.includes(ifName))?.masquerade;
  if (perNetwork) return perNetwork;
  return index === 0 ? record.pod?.masquerade : undefined;
}

/** The pod bridges whose VM has IPv6 addresses, with what their IPv6 responder serves. */
function ipv6Of(record: SandboxNetworkRecord) {
  return record.network ? ipv6ServicesFor(record.interfaces.map((i) => i.state), record.network.dns) : [];
}

/** Whether the VM side has anything to answer: DHCPv4 leases, or IPv6 on a tap interface. */
function needsResponder(record: SandboxNetworkRecord): boolean {
  return record.leases.length > 0 || ipv6Of(record).length > 0;
}
