/**
 * netd's work per sandbox: netns → CNI ADD (sandbox_setup.ts) → wire each interface for the VM
 * → DHCP (vm_side.ts, dhcp_responders.ts), and the same backwards; warm netns made ahead of any
 * sandbox (warm_netns.ts). Each step that creates something pushes its undo; a failure runs the
 * undos in reverse. What was built is persisted per sandbox (records.ts), so that a restarted
 * netd can tear it down and bring the DHCP responders back. This facade wires those parts to
 * their side effects (netns, ip, nft, CNI plugins, DHCP sockets: real unless a test gives fakes)
 * and answers serve's calls.
 */
import { ownerIdFor } from '../store/owner.js';
import { FailedPreconditionError, InvalidArgumentError } from '../errors.js';
import { isWarmNetnsName } from '../network/names.js';
import type { Logger } from '../log.js';
import type { Config } from '../config/table.js';
import { SyncBehind } from '../store/sync_behind.js';
import { networkStatusOf, type AttachmentRecord } from '../network/cni/attachments.js';
import { AttachmentCache } from '../network/cni/cache.js';
import type { VmNetworkView } from '../network/cni/result.js';
import { CniChain } from '../network/cni/chain.js';
import { ExecPluginRunner, type PluginRunner } from '../network/cni/exec.js';
import { BindingSelector } from '../network/bindings/select.js';
import { MasqueradeBinding } from '../network/bindings/masquerade.js';
import { SriovBinding } from '../network/bindings/sriov.js';
import { NodeSysfs, type Sysfs } from '../network/bindings/sysfs.js';
import { TapBinding } from '../network/bindings/tap.js';
import { ExecIpRunner, type IpRunner } from '../network/iproute.js';
import { DhcpIsolation, ExecNftRunner, type NftRunner } from '../network/isolation.js';
import { NetnsManager, type NetnsOps } from '../network/netns.js';
import { ExecSysctlRunner, type SysctlRunner } from '../network/sysctl.js';
import { CNI_CHECK_MIN_AGE_MS, CniCheckCache } from './cni_check_cache.js';
import { DhcpResponders, startDhcpServerInNetns, type DhcpResponderFactory } from './dhcp_responders.js';
import type { CniCheckReport, NetdEvent, NetdMethods, Readiness, SandboxNetworkStatus, SetupParams, SetupResult, TeardownParams, TeardownResult, VmNetworkPlanResult, VmNetworkResult } from './protocol.js';
import { netnsInUse, sandboxNetworkRecords, setupResultOf, type SandboxNetworkRecord, type SandboxNetworkRecords } from './records.js';
import { SandboxSetup } from './sandbox_setup.js';
import { VmSide } from './vm_side.js';
import { WarmNetns, randomWarmNetnsName } from './warm_netns.js';
import { StepTimer } from './step_timer.js';
import { resolveQemuUser, type QemuUser } from '../vmwrapper/qemu_user.js';
import { systemClock, type Clock } from '../clock.js';

/** Everything netd does to the host, each behind a narrow seam. */
export interface NetdSideEffects {
  netns: NetnsOps;
  ip: IpRunner;
  nft: NftRunner;
  cniPlugins: PluginRunner;
  /** Whether a netns path exists, for CNI DEL; unset, the CNI chain looks at the filesystem. */
  netnsPathExists?: (path: string) => Promise<boolean>;
  startDhcp: DhcpResponderFactory;
  warmNetnsName: () => string;
  /** Owner id for warm netns names and their collection; unset, ownerIdFor(config.stateDir). */
  ownerId?: string;
  /** sysfs, for SR-IOV VFs; unset, the tree at --sysfs-root. */
  sysfs?: Sysfs;
  /** The pod netns's sysctls (Calico gateway, masquerade). */
  sysctl?: SysctlRunner;
  /**
   * The user QEMU runs as, owner of every TAP netd makes (only it, or CAP_NET_ADMIN, can attach);
   * null = TAPs without owner. Unset, resolved from --qemu-user.
   */
  qemuUser?: QemuUser | null;
  /** Monotonic time, for the age of CNI CHECK reports; unset, the system's. */
  clock?: Pick<Clock, 'monotonicMs'>;
}

export class NetworkManager implements NetdMethods {
  private readonly records: SandboxNetworkRecords;
  private readonly syncBehind: SyncBehind;
  private readonly netns: NetnsOps;
  private readonly dhcp: DhcpResponders;
  private readonly sandboxSetup: SandboxSetup;
  private readonly vmSide: VmSide;
  private readonly warm: WarmNetns;
  /** The last CNI CHECK report of each sandbox; a periodic one runs every cniCheckIntervalMs (0: never). */
  private readonly cniChecks: CniCheckCache;
  private readonly cniCheckIntervalMs: number;
  private cniCheckTimer: NodeJS.Timeout | undefined;
  private cniCheckRound: Promise<void> | undefined;

  constructor(
    config: Config,
    private readonly logger: Logger,
    notify: (event: NetdEvent) => void = () => {},
    sideEffects: Partial<NetdSideEffects> = {},
  ) {
    // Everything netd records describes kernel objects a reboot wipes: write-behind durability.
    this.syncBehind = new SyncBehind((err, path) => logger.error({ err, path }, 'could not make netd state durable'));
    this.records = sandboxNetworkRecords(config.stateDir, logger, this.syncBehind);
    const cache = new AttachmentCache(config.cniCacheDir, this.syncBehind);
    const runner = sideEffects.cniPlugins ?? new ExecPluginRunner({ binDirs: config.cniBinDir, timeoutMs: config.cniTimeoutMs, logger });
    const chain = new CniChain({ runner, cache, logger, ...(sideEffects.netnsPathExists ? { netnsExists: sideEffects.netnsPathExists } : {}) });
    this.netns = sideEffects.netns ?? new NetnsManager({ logger });
    const ip = sideEffects.ip ?? new ExecIpRunner();
    const nft = sideEffects.nft ?? new ExecNftRunner();
    const isolation = new DhcpIsolation(nft);
    const sysctl = sideEffects.sysctl ?? new ExecSysctlRunner();
    // veths get the tap binding, SR-IOV VFs the sriov binding (when --sriov is on).
    const qemuUser = sideEffects.qemuUser !== undefined ? (sideEffects.qemuUser ?? undefined) : resolveQemuUser(config.qemuUser);
    const tapBinding = new TapBinding({ ip, isolation, logger, calico: { subnet: config.calicoSubnet, sysctl, nft }, ipv6: { sysctl }, ...(qemuUser !== undefined ? { tapOwner: { uid: qemuUser.uid } } : {}) });
    const sysfs = sideEffects.sysfs ?? new NodeSysfs(config.sysfsRoot);
    const sriovBinding = new SriovBinding({ ip, sysfs, logger });
    const ownerId = sideEffects.ownerId ?? ownerIdFor(config.stateDir);
    const masqueradeBinding = new MasqueradeBinding({
      ip, nft, sysctl, isolation, cidr: config.masqueradeCidr, ipv6Cidr: config.masqueradeIpv6Cidr, ownerId, logger, ...(qemuUser !== undefined ? { tapOwner: { uid: qemuUser.uid } } : {}),
    });
    const selector = new BindingSelector({ bindings: { tap: tapBinding, sriov: sriovBinding, masquerade: masqueradeBinding }, sysfs, sriovEnabled: config.sriov });
    this.dhcp = new DhcpResponders(sideEffects.startDhcp ?? startDhcpServerInNetns, logger);
    this.sandboxSetup = new SandboxSetup({ records: this.records, netns: this.netns, chain, cache, cniConfDir: config.cniConfDir, logger });
    this.vmSide = new VmSide({ records: this.records, ip, selector, dhcp: this.dhcp, logger, notify, leaseSeconds: config.dhcpLeaseSeconds });
    this.cniCheckIntervalMs = config.cniCheckIntervalS * 1000;
    const clock = sideEffects.clock ?? systemClock;
    this.cniChecks = new CniCheckCache({
      run: (sandboxId) => this.checkSandbox(sandboxId),
      networkOf: (sandboxId) => checkedNetworkOf(this.records.get(sandboxId)),
      nowMs: () => clock.monotonicMs(),
    });
    this.warm = new WarmNetns({ netns: this.netns, tapBinding, ip, records: this.records, logger, ownerId, newName: sideEffects.warmNetnsName ?? (() => randomWarmNetnsName(ownerId)) });
  }

  /**
   * Loads the records and brings back what the VM side of each live sandbox had (see
   * VmSide.restore); deletes the warm netns no sandbox adopted.
   */
  async load(): Promise<void> {
    await this.records.load();
    await this.warm.collectUnadopted();
    for (const record of this.records.values()) {
      if (!record.cni) continue;
      if (!(await this.netns.exists(record.netnsName))) {
        this.logger.warn({ sandboxId: record.id }, 'netns of a sandbox is gone; its VM side is not restored');
        continue;
      }
      this.vmSide.restore(record);
    }
    if (this.cniCheckIntervalMs > 0) {
      this.cniCheckTimer = setInterval(() => {
        this.cniCheckRound ??= this.checkAll().finally(() => (this.cniCheckRound = undefined));
      }, this.cniCheckIntervalMs);
      this.cniCheckTimer.unref();
    }
  }

  /** CNI CHECK of one sandbox; a failure is logged as a warning (the cache keeps it for its status). */
  private async checkSandbox(sandboxId: string): Promise<CniCheckReport | undefined> {
    const record = this.records.get(sandboxId);
    if (!record?.cni) return undefined;
    const report = await this.vmSide.inForeground(() => this.sandboxSetup.check(record));
    // A teardown that ran meanwhile makes the report meaningless.
    if (this.records.get(sandboxId) !== record) return undefined;
    const failed = report.networks.filter((n) => n.result === 'failed');
    if (failed.length > 0) this.logger.warn({ sandboxId, failed }, 'CNI CHECK of a sandbox network failed');
    return report;
  }

  /** One periodic round: every sandbox whose CNI ADD is done, one after the other. */
  private async checkAll(): Promise<void> {
    for (const record of [...this.records.values()]) {
      if (!record.cni) continue;
      await this.cniChecks.report(record.id, 0).catch((err: unknown) => this.logger.warn({ err, sandboxId: record.id }, 'CNI CHECK of a sandbox could not run'));
    }
  }

  /**
   * A warm netns, with interface 0's bridge, TAP and DHCP isolation already made (TapBinding.prewire),
   * so a sandbox that adopts it only joins them up, and its VM can have its NIC before that.
   */
  createWarmNetns(): Promise<{ netnsName: string; netnsPath: string }> {
    return this.warm.create();
  }

  async deleteWarmNetns({ netnsName }: { netnsName: string }): Promise<Record<string, never>> {
    await this.warm.delete(netnsName);
    return {};
  }

  networkReady(): Promise<Readiness> {
    return this.sandboxSetup.networkReady();
  }

  /** netns and CNI ADD (idempotent); the VM side follows (see VmSide.afterSetup). */
  setup(params: SetupParams): Promise<SetupResult> {
    return this.vmSide.inForeground(async () => {
      const existing = this.records.get(params.sandboxId);
      if (existing?.cni) return setupResultOf(existing);
      this.cniChecks.delete(params.sandboxId);
      const record = await this.sandboxSetup.setUp(params);
      this.vmSide.afterSetup(record);
      return setupResultOf(record);
    });
  }

  /**
   * Idempotent: tears down whatever exists for the sandbox, from its record or by its names.
   * With `keepWarmNetns`, an adopted warm netns is kept (for rewarmNetns) instead of deleted when
   * the unwiring and CNI DEL went through: the sandbox's network is gone from it either way, and
   * making it warm again is the pool's work, not the Stop's (so it runs after the reply).
   */
  teardown({ sandboxId, keepWarmNetns }: TeardownParams): Promise<TeardownResult> {
    return this.vmSide.inForeground(() =>
      this.vmSide.whileTearingDown(sandboxId, async () => {
        const steps = new StepTimer();
        const record = this.records.get(sandboxId);
        const keepNetns = keepWarmNetns === true && record?.prewired !== undefined;
        // The CNI cache is read, and the first DEL plugins started (their stdin held), while the
        // VM side is released; DEL runs after both.
        const cached = this.sandboxSetup.cachedAttachments(sandboxId);
        cached.catch(() => {});
        const discardPrestarted = this.sandboxSetup.prestartDels(sandboxId, record, cached);
        const failures: string[] = [];
        try {
          failures.push(...(await this.vmSide.tearDown(sandboxId, record, steps)));
          failures.push(...(await this.sandboxSetup.tearDown(sandboxId, record, { keepNetns, steps, cached })));
        } finally {
          discardPrestarted();
        }
        if (keepNetns && failures.length > 0) failures.push(...(await this.sandboxSetup.deleteNetns(record!.netnsName)));
        if (failures.length > 0) throw new FailedPreconditionError(`sandbox network teardown incomplete: ${failures.join('; ')}`);
        await this.records.delete(sandboxId);
        this.cniChecks.delete(sandboxId);
        steps.mark('records');
        this.logger.debug({ sandboxId, stepsMs: steps.totals() }, 'sandbox network torn down');
        return keepNetns ? { keptNetns: record!.netnsName } : {};
      }),
    );
  }

  /** A netns a teardown kept: warm again, or deleted when it cannot be (see WarmNetns.rewarm). */
  async rewarmNetns({ netnsName }: { netnsName: string }): Promise<{ rewarmed: boolean }> {
    if (!isWarmNetnsName(netnsName)) throw new InvalidArgumentError(`netns ${JSON.stringify(netnsName)} is not a warm netns`);
    if (netnsInUse(this.records, netnsName)) throw new FailedPreconditionError(`warm netns ${netnsName} belongs to a sandbox now`);
    const steps = new StepTimer();
    let rewarmed = false;
    try {
      rewarmed = await this.warm.rewarm(netnsName);
    } catch (err) {
      this.logger.warn({ err, netns: netnsName }, 'could not make a netns warm again; deleting it');
    }
    if (!rewarmed) await this.warm.delete(netnsName);
    steps.mark(rewarmed ? 'rewarm' : 'delete');
    this.logger.debug({ netns: netnsName, stepsMs: steps.totals() }, rewarmed ? 'netns made warm again' : 'netns not made warm again; deleted');
    return { rewarmed };
  }

  async status({ sandboxId, check }: { sandboxId: string; check?: boolean }): Promise<SandboxNetworkStatus | null> {
    if (check) await this.cniChecks.report(sandboxId, CNI_CHECK_MIN_AGE_MS);
    const record = this.records.get(sandboxId);
    if (!record) return null;
    const cniCheck = this.cniChecks.get(sandboxId);
    return {
      sandboxId,
      netnsPath: record.netnsPath,
      ...this.vmSide.statusOf(record),
      ...(record.cni ? { networkStatus: networkStatusOf(record.attachments ?? legacyAttachments(record.cni), record.cni) } : {}),
      ...(cniCheck ? { cniCheck } : {}),
    };
  }

  vmNetworkPlan({ sandboxId }: { sandboxId: string }): Promise<VmNetworkPlanResult> {
    return this.vmSide.plan(sandboxId);
  }

  vmNetwork({ sandboxId }: { sandboxId: string }): Promise<VmNetworkResult> {
    return this.vmSide.network(sandboxId);
  }

  /** netd exiting: close the sockets, leave the networks (the VMs keep running). */
  async close(): Promise<void> {
    clearInterval(this.cniCheckTimer);
    await this.cniCheckRound;
    await this.vmSide.close();
    await this.dhcp.stopAll();
    await this.syncBehind.flush();
  }
}

/**
 * What a CNI CHECK of the sandbox judges, as a string: its netns, the interfaces ADD gave it, and
 * which of them the VM side took over (those are reported skipped); undefined before ADD is done.
 */
function checkedNetworkOf(record: SandboxNetworkRecord | undefined): string | undefined {
  if (!record?.cni) return undefined;
  return JSON.stringify([
    record.netnsPath,
    record.cni.interfaces.map((i) => i.name),
    record.interfaces.map((i) => [i.context.cniInterface.name, i.state.kind]),
  ]);
}

/** A record of a netd before several networks: one default attachment holding every interface. */
function legacyAttachments(cni: VmNetworkView): AttachmentRecord[] {
  return [{ network: 'default', ifName: 'eth0', isDefault: true, interfaces: cni.interfaces.map((i) => i.name), dns: cni.dns }];
}
