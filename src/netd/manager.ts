/**
 * netd's work per sandbox: netns → CNI ADD → wire each interface for the VM → DHCP, and the
 * same backwards. Each step that creates something pushes its undo; a failure runs the undos in
 * reverse. What was built is persisted per sandbox so that a restarted netd can tear it down and
 * bring the DHCP responders back.
 */
import { join } from 'node:path';
import type dgram from 'node:dgram';
import { RecordStore } from '../store/record_store.js';
import { SyncBehind } from '../store/sync_behind.js';
import { randomBytes } from 'node:crypto';
import { FailedPreconditionError, InvalidArgumentError, errorText } from '../errors.js';
import type { Logger } from '../log.js';
import type { Config } from '../config/table.js';
import { loadNetworkConfig, type NetworkConfigList } from '../network/cni/config.js';
import { CniChain, type AttachmentRequest } from '../network/cni/chain.js';
import { AttachmentCache } from '../network/cni/cache.js';
import { ExecPluginRunner } from '../network/cni/exec.js';
import { toVmNetworkView, type VmNetworkView } from '../network/cni/result.js';
import { DhcpServer } from '../network/dhcp/server.js';
import { bindDhcpSocketInNetns } from '../network/dhcp/bind_in_netns.js';
import type { DhcpLease } from '../network/dhcp/lease_policy.js';
import type { DnsConfig, VmInterface, VmNetwork } from '../network/types.js';
import { NetnsManager, netnsPath } from '../network/netns.js';
import { isWarmNetnsName, netnsNameFor, prewiredNames } from '../network/names.js';
import type { NetworkBinding } from '../network/bindings/binding.js';
import type { BindingContext, WiredInterface } from '../network/bindings/types.js';
import { TapBinding } from '../network/bindings/tap.js';
import { BindingSelector } from '../network/bindings/select.js';
import { readInterfaceSnapshot } from '../network/bindings/snapshot.js';
import { ExecIpRunner, type IpRunner } from '../network/iproute.js';
import { DhcpIsolation, ExecNftRunner } from '../network/isolation.js';
import type { NetdEvent, NetdMethods, Readiness, SandboxNetworkStatus, SetupParams, SetupResult, VmNetworkPlanResult, VmNetworkResult } from './protocol.js';

/** The interface name CNI creates in the sandbox, as kubelet asks for it. */
export const POD_IFNAME = 'eth0';
/**
 * How long netd must have had no setup or teardown in flight before it prepares a VM side that
 * nobody waits for yet: a burst of RunPodSandbox calls is not slowed by the work of the ones before.
 */
const IDLE_BEFORE_PREPARE_MS = 25;
/** VMs renew long before this; a short-ish lease keeps a stale VM from holding on forever. */
const LEASE_SECONDS = 86_400;

export interface SandboxNetworkRecord {
  id: string;
  netnsName: string;
  netnsPath: string;
  /** What CNI ADD gave the sandbox, as the VM side reads it; set once ADD succeeded. */
  cni?: VmNetworkView;
  /** What the VM side needs from the pod spec besides CNI's answer. */
  pod?: { hostname: string; dns: SetupParams['dns'] };
  /** Each wired interface with the context its binding needs to undo it. */
  interfaces: { context: BindingContext; state: WiredInterface }[];
  /** The VM side, once every interface is wired. */
  network?: VmNetwork;
  /** Bridge and TAP made in advance for interface 0 (eth0), when the netns was a warm one. */
  prewired?: { bridge: string; tap: string };
  leases: DhcpLease[];
}

type Undo = { what: string; run: () => Promise<void> };

/**
 * A sandbox's network is built in two parts. `setup` (RunPodSandbox) does what the pod IP depends
 * on: netns and CNI ADD. The VM side (each interface's binding, then its DHCP responder) follows:
 * at once when someone waits for it (`vmNetwork`, from CreateContainer), otherwise as soon as
 * netd is idle. A failure there is reported to serve as a `vmSideFailed` event. Teardown drops a
 * pending preparation and waits for a running one, so it never races a half-done wiring.
 */
export class NetworkManager implements NetdMethods {
  private readonly records: RecordStore<SandboxNetworkRecord>;
  private readonly chain: CniChain;
  private readonly cache: AttachmentCache;
  private readonly syncBehind: SyncBehind;
  private readonly dhcp = new Map<string, DhcpServer>();
  /** VM-side preparations in progress, and why the last one of a sandbox failed. */
  private readonly preparing = new Map<string, Promise<void>>();
  private readonly prepareFailures = new Map<string, string>();
  /** The plan of each preparation in progress (see vmNetworkPlan), and who waits for one. */
  private readonly plans = new Map<string, { network: VmNetwork; tapsReady: boolean }>();
  private readonly planWaiters = new Map<string, Set<() => void>>();
  /** VM sides to prepare once netd is idle, and what keeps it from being idle. */
  private readonly deferred = new Map<string, SandboxNetworkRecord>();
  private foregroundCalls = 0;
  /** After close(): no preparation starts (one scheduled for a warm sandbox may still fire). */
  private closed = false;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Sandboxes whose teardown is running: nothing may be (re)built for them meanwhile. */
  private readonly tearingDown = new Set<string>();
  private readonly netns: NetnsManager;
  private readonly tapBinding: TapBinding;
  private readonly ip: IpRunner = new ExecIpRunner();
  private readonly selector: BindingSelector;

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
    private readonly notify: (event: NetdEvent) => void = () => {},
  ) {
    // Everything netd records describes kernel objects a reboot wipes: write-behind durability.
    this.syncBehind = new SyncBehind((err, path) => logger.error({ err, path }, 'could not make netd state durable'));
    this.records = new RecordStore(join(config.stateDir, 'netd'), logger, this.syncBehind);
    this.cache = new AttachmentCache(config.cniCacheDir, this.syncBehind);
    const runner = new ExecPluginRunner({ binDirs: config.cniBinDir, timeoutMs: config.cniTimeoutMs, logger });
    this.chain = new CniChain({ runner, cache: this.cache, logger });
    this.netns = new NetnsManager({ logger });
    const isolation = new DhcpIsolation(new ExecNftRunner());
    // veths get the tap binding; the selector recognises SR-IOV VFs (their binding joins it there).
    this.tapBinding = new TapBinding({ ip: this.ip, isolation, logger });
    this.selector = new BindingSelector({ bindings: { tap: this.tapBinding } });
  }

  /**
   * Loads the records and brings back what the VM side of each live sandbox had: its DHCP
   * responder, or, when a previous netd stopped in the middle of preparing it, the preparation.
   */
  async load(): Promise<void> {
    await this.records.load();
    await this.deleteUnadoptedWarmNetns();
    for (const record of this.records.values()) {
      if (!record.cni) continue;
      if (!(await this.netns.exists(record.netnsName))) {
        this.logger.warn({ sandboxId: record.id }, 'netns of a sandbox is gone; its VM side is not restored');
        continue;
      }
      if (!record.network) {
        this.logger.warn({ sandboxId: record.id }, 'VM side of a sandbox was not ready when netd stopped; preparing it again');
        this.defer(record);
        continue;
      }
      // Wired already: this only brings the DHCP responder back; a failure reaches serve as an event.
      if (record.leases.length > 0) void this.beginPrepare(record);
    }
  }

  /**
   * A warm netns, with interface 0's bridge, TAP and DHCP isolation already made (TapBinding.prewire),
   * so a sandbox that adopts it only joins them up, and its VM can have its NIC before that.
   */
  async createWarmNetns(): Promise<{ netnsName: string; netnsPath: string }> {
    const netnsName = `vmlet-warm-${randomBytes(8).toString('hex')}`;
    const netnsPath = await this.netns.create(netnsName);
    try {
      await this.tapBinding.prewire(netnsName, prewiredNames(netnsName), POD_IFNAME);
    } catch (err) {
      await this.netns.delete(netnsName).catch((e: unknown) => this.logger.error({ err: e, netns: netnsName }, 'could not delete a warm netns that failed'));
      throw err;
    }
    return { netnsName, netnsPath };
  }

  async deleteWarmNetns({ netnsName }: { netnsName: string }): Promise<Record<string, never>> {
    if (!isWarmNetnsName(netnsName)) throw new InvalidArgumentError(`netns ${JSON.stringify(netnsName)} is not a warm netns`);
    if ([...this.records.values()].some((r) => r.netnsName === netnsName)) {
      throw new FailedPreconditionError(`warm netns ${netnsName} belongs to a sandbox now`);
    }
    await this.netns.delete(netnsName);
    return {};
  }

  /** Warm netns no sandbox adopted: what serve left when it stopped (its warm VMs go with it). */
  private async deleteUnadoptedWarmNetns(): Promise<void> {
    const adopted = new Set([...this.records.values()].map((r) => r.netnsName));
    for (const name of await this.netns.list()) {
      if (!isWarmNetnsName(name) || adopted.has(name)) continue;
      this.logger.info({ netns: name }, 'deleting a warm netns no sandbox adopted');
      await this.netns.delete(name).catch((err) => this.logger.error({ err, netns: name }, 'could not delete a warm netns'));
    }
  }

  async networkReady(): Promise<Readiness> {
    const loaded = await loadNetworkConfig(this.config.cniConfDir);
    if (loaded.ok) return { ready: true };
    const skipped = loaded.skipped.map((s) => `${s.file}: ${s.reason}`).join('; ');
    return { ready: false, reason: 'NetworkPluginNotReady', message: skipped ? `${loaded.reason} (${skipped})` : loaded.reason };
  }

  setup(params: SetupParams): Promise<SetupResult> {
    return this.inForeground(() => this.setupNetwork(params));
  }

  private async setupNetwork(params: SetupParams): Promise<SetupResult> {
    const existing = this.records.get(params.sandboxId);
    if (existing?.cni) return setupResultOf(existing);

    const steps = new StepTimer();
    const loaded = await loadNetworkConfig(this.config.cniConfDir);
    if (!loaded.ok) throw new FailedPreconditionError(`network is not ready: ${loaded.reason}`);
    const netConfig = loaded.config;
    steps.mark('config');

    const undos: Undo[] = [];
    const adopting = params.netnsName !== undefined;
    if (adopting && !isWarmNetnsName(params.netnsName!)) throw new InvalidArgumentError(`netns ${JSON.stringify(params.netnsName)} is not a warm netns`);
    const netnsName = params.netnsName ?? netnsNameFor(params.sandboxId);
    const record: SandboxNetworkRecord = {
      id: params.sandboxId,
      netnsName,
      netnsPath: netnsPath(netnsName),
      interfaces: [],
      leases: [],
      ...(adopting ? { prewired: prewiredNames(netnsName) } : {}),
    };
    try {
      // Recorded first, so a crash at any later point leaves what a teardown needs.
      await this.records.put(record);
      undos.push({ what: 'record', run: () => this.records.delete(record.id) });
      steps.mark('record');

      if (adopting) {
        if (!(await this.netns.exists(netnsName))) throw new FailedPreconditionError(`warm netns ${netnsName} does not exist`);
      } else {
        await this.netns.create(netnsName);
      }
      steps.mark('netns');
      undos.push({ what: 'netns', run: () => this.netns.delete(netnsName) });

      const attachment: Omit<AttachmentRequest, 'netns'> = {
        containerId: params.sandboxId,
        ifName: POD_IFNAME,
        pod: { namespace: params.podNamespace, name: params.podName, uid: params.podUid, infraContainerId: params.sandboxId },
        capabilityArgs: capabilityArgs(params),
      };
      // DEL needs no record of its own: the CNI cache (written before ADD runs) drives it.
      const outcome = await this.chain.add(netConfig, { ...attachment, netns: record.netnsPath });
      steps.mark('cni-add');
      undos.push({ what: 'cni', run: () => this.chain.del(netConfig.name, { ...attachment, netns: record.netnsPath }, netConfig) });

      const view = toVmNetworkView(outcome.result, { ifName: POD_IFNAME });
      if (view.interfaces.length === 0) throw new FailedPreconditionError(`CNI network ${netConfig.name} gave the sandbox no interface`);
      record.cni = view;
      record.pod = { hostname: params.hostname, dns: params.dns };
      await this.records.put(record);
      steps.mark('record');
      // A sandbox on a warm netns is about to get its VM (a warm one waits for it): its VM side
      // starts now. Any other waits until netd is idle, so a burst of Runs is not slowed.
      // (After this reply is on its way: the first spawn of the preparation blocks the event loop.)
      if (record.prewired) setImmediate(() => void this.beginPrepare(record));
      else this.defer(record);
      this.logger.debug({ sandboxId: params.sandboxId, stepsMs: steps.totals() }, 'sandbox network set up');
      return setupResultOf(record);
    } catch (err) {
      await this.runUndos(params.sandboxId, undos, err);
      throw err;
    }
  }

  /** Runs a setup or teardown; while any runs, netd is not idle. */
  private async inForeground<T>(work: () => Promise<T>): Promise<T> {
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

  /** Queues the VM side of a sandbox whose CNI ADD is done, for when netd is idle. */
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
      if (next && this.foregroundCalls === 0) void this.beginPrepare(next);
    }, IDLE_BEFORE_PREPARE_MS);
  }

  /**
   * Starts preparing the VM side of a sandbox now (`vmNetwork` waits for it), or joins the
   * preparation already running; resolves when done, failed or not. Never during its teardown.
   */
  private beginPrepare(record: SandboxNetworkRecord): Promise<void> {
    const running = this.preparing.get(record.id);
    if (running) return running;
    this.deferred.delete(record.id);
    if (this.tearingDown.has(record.id) || this.closed) return Promise.resolve();
    this.prepareFailures.delete(record.id);
    const preparing = this.prepareVmSide(record).then(
      () => void this.prepareFailures.delete(record.id),
      (err: unknown) => {
        const message = errorText(err);
        this.prepareFailures.set(record.id, message);
        this.logger.error({ err, sandboxId: record.id }, 'VM side of a sandbox could not be prepared');
        this.notify({ event: 'vmSideFailed', sandboxId: record.id, message });
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
  private async prepareVmSide(record: SandboxNetworkRecord): Promise<void> {
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
        // the VM's whole network description, which vmNetworkPlan hands out while wiring runs.
        const plans: { binding: NetworkBinding<WiredInterface>; context: BindingContext; planned: WiredInterface }[] = [];
        for (const [index, iface] of cni.interfaces.entries()) {
          const snapshot = await readInterfaceSnapshot(this.ip, record.netnsName, iface.name);
          steps.mark('snapshot');
          const binding: NetworkBinding<WiredInterface> = await this.selector.select(snapshot.link);
          const context: BindingContext = { netnsName: record.netnsName, netnsPath: record.netnsPath, sandboxId: record.id, index, cniInterface: iface };
          if (index === 0 && iface.name === POD_IFNAME && record.prewired) context.prewired = record.prewired;
          plans.push({ binding, context, planned: await binding.plan(context, snapshot) });
        }
        // Persisted before anything changes, so a crash mid-wire can still be undone.
        record.interfaces = plans.map(({ context, planned }) => ({ context, state: planned }));
        await this.records.put(record);
        const pod = record.pod!;
        const describe = (interfaces: VmInterface[]): VmNetwork => ({ interfaces, dns: podDns(pod.dns, cni.dns), ...(pod.hostname ? { hostname: pod.hostname } : {}) });
        this.publishPlan(record.id, { network: describe(plans.map((p) => p.planned.vm)), tapsReady: plans.every((p) => p.planned.prewired === true) });
        steps.mark('plan');
        const vmInterfaces: VmInterface[] = [];
        for (const [slot, { binding, context, planned }] of plans.entries()) {
          const state = await binding.wire(context, planned);
          if (state !== planned) {
            record.interfaces[slot] = { context, state };
            await this.records.put(record);
          }
          undos.push({ what: `wire ${context.cniInterface.name}`, run: () => binding.unwire(context, state) });
          vmInterfaces.push(state.vm);
        }
        steps.mark('wire');
        const network = describe(vmInterfaces);
        record.leases = leasesFor(network);
        record.network = network;
        try {
          await this.records.put(record);
        } catch (err) {
          // Not on disk, so not true in memory either: the undos below take the wiring back.
          record.leases = [];
          delete record.network;
          throw err;
        }
        steps.mark('record');
      } catch (err) {
        await this.runUndos(record.id, undos, err);
        throw err;
      }
    }
    if (record.leases.length > 0) await this.startDhcp(record.id, record.netnsPath, record.leases);
    steps.mark('dhcp');
    this.logger.debug({ sandboxId: record.id, stepsMs: steps.totals() }, 'VM side of a sandbox prepared');
  }

  private async runUndos(sandboxId: string, undos: Undo[], cause: unknown): Promise<void> {
    for (const undo of undos.reverse()) {
      try {
        await undo.run();
      } catch (err) {
        // The record stays (its undo runs last); teardown, which serve calls next, retries.
        this.logger.error({ err, sandboxId, step: undo.what, cause: errorText(cause) }, 'rollback step failed');
      }
    }
  }

  /** Unwires every interface of the record (idempotent); returns what failed. */
  private async unwireAll(record: SandboxNetworkRecord): Promise<string[]> {
    const failures: string[] = [];
    for (const { context, state } of [...record.interfaces].reverse()) {
      try {
        await this.selector.forState(state).unwire(context, state);
      } catch (err) {
        failures.push(`unwire ${context.cniInterface.name}: ${errorText(err)}`);
      }
    }
    return failures;
  }

  /** Idempotent: tears down whatever exists for the sandbox, from its record or by its names. */
  teardown(params: { sandboxId: string }): Promise<Record<string, never>> {
    return this.inForeground(() => this.teardownNetwork(params));
  }

  private async teardownNetwork({ sandboxId }: { sandboxId: string }): Promise<Record<string, never>> {
    // Before any await: from here on vmNetwork refuses and no preparation starts.
    this.tearingDown.add(sandboxId);
    try {
      await this.tearDown(sandboxId);
    } finally {
      this.tearingDown.delete(sandboxId);
    }
    return {};
  }

  private async tearDown(sandboxId: string): Promise<void> {
    this.deferred.delete(sandboxId);
    const record = this.records.get(sandboxId);
    const netnsName = record?.netnsName ?? netnsNameFor(sandboxId);
    const nsPath = record?.netnsPath ?? netnsPath(netnsName);
    // A preparation still running must finish (or fail and undo itself) before its work is undone.
    await this.preparing.get(sandboxId);
    this.prepareFailures.delete(sandboxId);
    await this.stopDhcp(sandboxId);
    const failures = record ? await this.unwireAll(record) : [];
    // DEL from the cache of every attachment ADD left for this sandbox, even without a record.
    for (const cached of await this.cache.list()) {
      if (cached.containerId !== sandboxId) continue;
      try {
        await this.chain.del(cached.networkName, { containerId: sandboxId, ifName: cached.ifName, netns: nsPath });
      } catch (err) {
        failures.push(`CNI DEL ${cached.networkName}: ${errorText(err)}`);
      }
    }
    try {
      await this.netns.delete(netnsName);
    } catch (err) {
      failures.push(`delete netns ${netnsName}: ${errorText(err)}`);
    }
    if (failures.length > 0) throw new FailedPreconditionError(`sandbox network teardown incomplete: ${failures.join('; ')}`);
    await this.records.delete(sandboxId);
  }

  async status({ sandboxId }: { sandboxId: string }): Promise<SandboxNetworkStatus | null> {
    const record = this.records.get(sandboxId);
    if (!record) return null;
    const server = this.dhcp.get(sandboxId);
    const failure = this.prepareFailures.get(sandboxId);
    return {
      sandboxId,
      netnsPath: record.netnsPath,
      vmSide: this.vmSideOf(record),
      ...(failure !== undefined ? { error: failure } : {}),
      vmNetwork: record.network ?? null,
      interfaces: record.interfaces.map((w) => ({ ...w.state })),
      dhcp: server ? { running: true, leases: record.leases.map((l) => ({ mac: l.mac, ip: l.ip })), stats: server.stats() } : { running: false },
    };
  }

  private vmSideOf(record: SandboxNetworkRecord): SandboxNetworkStatus['vmSide'] {
    if (this.deferred.has(record.id)) return 'pending';
    if (this.preparing.has(record.id)) return 'preparing';
    if (this.prepareFailures.has(record.id)) return 'failed';
    return record.network ? 'ready' : 'not prepared';
  }

  /**
   * Waits for the VM side of the sandbox and returns it, or why it could not be prepared. A lost
   * DHCP responder (netd restarted and could not bring it back) gets one more try here.
   */
  /** The record of a sandbox whose VM side may be asked for: CNI ADD done, no teardown running. */
  private vmSideRecord(sandboxId: string): SandboxNetworkRecord {
    const record = this.records.get(sandboxId);
    if (!record?.cni) throw new FailedPreconditionError(`sandbox ${sandboxId} has no network`);
    if (this.tearingDown.has(sandboxId)) throw new FailedPreconditionError(`the network of sandbox ${sandboxId} is being torn down`);
    return record;
  }

  /** The plan of a preparation in progress becomes known: wake whoever waits for it. */
  private publishPlan(sandboxId: string, plan: { network: VmNetwork; tapsReady: boolean }): void {
    this.plans.set(sandboxId, plan);
    for (const wake of this.planWaiters.get(sandboxId) ?? []) wake();
    this.planWaiters.delete(sandboxId);
  }

  /**
   * The VM's network as planned (names, MACs, addresses, routes, DNS), as soon as it is decided:
   * before the wiring is done (vmNetwork waits for that). For what only describes the network,
   * such as the cloud-init seed. Starts the preparation if nothing has.
   */
  async vmNetworkPlan({ sandboxId }: { sandboxId: string }): Promise<VmNetworkPlanResult> {
    const record = this.vmSideRecord(sandboxId);
    if (record.network) return { ready: true, network: record.network, tapsReady: true };
    const known = this.plans.get(sandboxId);
    if (known) return { ready: true, ...known };
    const failure = this.preparing.has(sandboxId) ? undefined : this.prepareFailures.get(sandboxId);
    if (failure !== undefined) return { ready: false, message: failure };
    const preparation = this.preparing.get(sandboxId) ?? this.beginPrepare(record);
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
    return { ready: false, message: this.prepareFailures.get(sandboxId) ?? 'the VM side of the sandbox was not prepared' };
  }

  async vmNetwork({ sandboxId }: { sandboxId: string }): Promise<VmNetworkResult> {
    for (let attempt = 0; ; attempt++) {
      const record = this.vmSideRecord(sandboxId);
      // Someone waits for it now: no more waiting for netd to be idle.
      if (this.deferred.has(sandboxId)) void this.beginPrepare(record);
      await this.preparing.get(sandboxId);
      const failure = this.prepareFailures.get(sandboxId);
      if (failure !== undefined) return { ready: false, message: failure };
      const serving = record.leases.length === 0 || this.dhcp.has(sandboxId);
      if (record.network && serving) return { ready: true, network: record.network };
      if (attempt > 0) return { ready: false, message: 'the DHCP responder is not running' };
      void this.beginPrepare(record);
    }
  }

  private async startDhcp(sandboxId: string, netnsPath: string, leases: DhcpLease[]): Promise<void> {
    await this.stopDhcp(sandboxId);
    const socket: dgram.Socket = await bindDhcpSocketInNetns(netnsPath);
    const server = new DhcpServer(socket, { logger: this.logger.child({ sandboxId }) });
    for (const lease of leases) server.setLease(lease);
    this.dhcp.set(sandboxId, server);
  }

  private async stopDhcp(sandboxId: string): Promise<void> {
    const server = this.dhcp.get(sandboxId);
    if (!server) return;
    this.dhcp.delete(sandboxId);
    await server.close();
  }

  /** netd exiting: close the sockets, leave the networks (the VMs keep running). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.deferred.clear();
    // A preparation still running would start a DHCP responder after the ones stopped below.
    await Promise.allSettled([...this.preparing.values()]);
    for (const id of [...this.dhcp.keys()]) await this.stopDhcp(id);
    await this.syncBehind.flush();
  }
}

/** The pod IPs, in CNI's interface order: the first is the pod IP, the rest its additional IPs. */
function setupResultOf(record: SandboxNetworkRecord): SetupResult {
  return { netnsPath: record.netnsPath, podIps: record.cni!.interfaces.flatMap((i) => i.ips.map((ip) => ip.address)) };
}

export function capabilityArgs(params: SetupParams): Record<string, unknown> {
  const args: Record<string, unknown> = {
    // Only mappings that publish a host port, as containerd passes them: portmap refuses host port 0.
    portMappings: params.portMappings
      .filter((p) => p.hostPort > 0)
      .map((p) => ({ hostPort: p.hostPort, containerPort: p.containerPort, protocol: p.protocol, hostIP: p.hostIP })),
  };
  if (params.dns.servers.length > 0 || params.dns.searches.length > 0) {
    args.dns = { servers: params.dns.servers, searches: params.dns.searches, options: params.dns.options };
  }
  return args;
}

/** The pod's DNSConfig wins; the CNI result fills in when the pod gave none. */
export function podDns(pod: SetupParams['dns'], cni: DnsConfig): DnsConfig {
  if (pod.servers.length > 0 || pod.searches.length > 0) {
    return { nameservers: pod.servers, search: pod.searches, options: pod.options, ...(cni.domain ? { domain: cni.domain } : {}) };
  }
  return cni;
}

/** One DHCP lease per tap-bound interface with an IPv4 address. */
export function leasesFor(network: VmNetwork): DhcpLease[] {
  const leases: DhcpLease[] = [];
  for (const iface of network.interfaces) {
    if (iface.binding.kind !== 'tap') continue;
    const ip = iface.ips.find((a) => a.family === 4);
    if (!ip) continue;
    leases.push({
      mac: iface.mac,
      ip: ip.address,
      prefixLength: ip.prefixLength,
      ...(ip.gateway ? { gateway: ip.gateway } : {}),
      routes: iface.routes,
      dns: network.dns,
      ...(network.hostname ? { hostname: network.hostname } : {}),
      mtu: iface.mtu,
      leaseSeconds: LEASE_SECONDS,
      // The VM only needs a stable, non-conflicting id; the gateway (or the pod IP's network) works.
      serverId: ip.gateway ?? ip.address,
    });
  }
  return leases;
}

export type { NetworkConfigList };

/** Sums wall time per named step, for one debug line per setup. */
class StepTimer {
  private last = process.hrtime.bigint();
  private readonly ms: Record<string, number> = {};

  mark(step: string): void {
    const now = process.hrtime.bigint();
    this.ms[step] = Math.round(((this.ms[step] ?? 0) + Number(now - this.last) / 1e6) * 100) / 100;
    this.last = now;
  }

  totals(): Record<string, number> {
    return { ...this.ms };
  }
}
