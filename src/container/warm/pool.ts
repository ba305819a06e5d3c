/**
 * Warm VMs: QEMU processes libvirt has already started, paused before their first instruction,
 * each inside a network namespace of its own that no sandbox has yet.
 *
 * Why: libvirt's domain start is ~220 ms here (QEMU loading and initialising under TCG, then
 * libvirt's monitor set-up) and a pod would otherwise pay it in StartContainer. A pod that finds a
 * warm VM pays ~0: RunPodSandbox adopts the VM's netns as the sandbox's (CNI ADD runs in it, so
 * QEMU is in the pod's netns as with a cold start), CreateContainer plugs the root disk, seed and
 * TAP NICs in through QMP (src/container/warm/hotplug_commands.ts), StartContainer resumes it.
 *
 * A warm VM has the default shape (memory, vCPUs, domain type); a container that asks for another
 * one, or for something a warm VM cannot give (SCSI disk, CPU model, system UUID, SR-IOV, more
 * NICs than its root ports), gets a cold VM instead and the warm one is discarded.
 *
 * Size: --vm-warm-pool is the floor, --vm-warm-pool-max the ceiling. The target in between is the
 * floor plus the claims of the last minute (a burst of pods is likely followed by more within a
 * minute; a minute without claims brings it back to the floor, and the surplus idle VMs go). Up to
 * --vm-warm-fill-parallel VMs are made at once: each costs a QEMU start's CPU (~220 ms of a core
 * under TCG here), so this is the CPU budget a refill may take from the pods running meanwhile.
 *
 * Ownership: an idle VM belongs to the pool (domain, directory under the VM data dir, warm netns);
 * a claimed one to the pool until CreateContainer adopts it or the sandbox goes (release); the
 * netns is the sandbox's from the claim on. A sandbox that stops without having used its VM gives
 * both back (holdForReturn, then finishReturn once netd has made the netns warm again). Nothing of the pool outlives the daemon: close()
 * discards the idle VMs, and at start ContainerService.reconcile removes any warm domain and
 * directory no record owns while netd deletes unadopted warm netns.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../log.js';
import { errorText } from '../../errors.js';
import type { DomainRef } from '../../libvirt/client.js';
import { DomainCreateFlags } from '../../libvirt/client.js';
import { destroyQuietly, undefineFully, type DomainOps } from '../../libvirt/domain_ops.js';
import { buildDomainXml } from '../../libvirt/domain_xml.js';
import { warmPortsFor, warmQmpArgs } from './hotplug_commands.js';
import { vmwrapperEnv } from '../../vmwrapper/netns_env.js';
import { CONSOLE_RAW, warmQmpPath } from '../layout.js';
import { giveSocketDir, giveVmDir } from '../../vmwrapper/qemu_access.js';
import { consoleSocketPath, guestAgentSocketPath } from '../vm_sockets.js';
import type { HostFacts } from '../domain_spec_builder.js';
import type { VolumeHost } from '../volumes/exports.js';

/** Warm domains are named this (plus part of the id) so leftovers are recognisable. */
export const WARM_DOMAIN_PREFIX = 'vmlet-warm-';
/** NICs a warm VM has root ports for; a pod with more gets a cold VM. */
export const WARM_MAX_NICS = 4;

export interface WarmVm {
  /** The container id it becomes; its directory is <dataDir>/<id>. */
  id: string;
  domainName: string;
  uuid: string;
  dom: DomainRef;
  dir: string;
  netnsName: string;
  memoryBytes: number;
  vcpus: number;
  domainType: HostFacts['domainType'];
  /** Free root ports (root disk + NICs). */
  ports: number;
  /** The domain's own QMP monitor socket (warmQmpArgs): warmQmpPath(qmpDir, id). */
  qmpPath: string;
}

/** The netd calls the pool needs. */
export interface WarmNetns {
  create(): Promise<{ netnsName: string }>;
  delete(netnsName: string): Promise<void>;
}

export interface WarmPoolOptions {
  /** How many idle warm VMs to keep at least (the floor); 0 turns the pool off. */
  size: number;
  /** How many idle warm VMs recent demand may ask for at most (the ceiling); default: size. */
  max?: number;
  /** How many warm VMs a refill makes at once; default 1. */
  fillParallel?: number;
  /** How long a claim counts towards the target; default 60 s. */
  demandWindowMs?: number;
  client: () => DomainOps;
  netns: WarmNetns;
  host: HostFacts;
  owner: string;
  dataDir: string;
  /** Directory of the warm VMs' QMP sockets (see warmQmpPath); made by start(). */
  qmpDir: string;
  logger: Logger;
  /** Quiet time after a claim before refilling, so the refill's QEMU start stays off that pod's calls. */
  refillDelayMs?: number;
  /**
   * Volume exports: a warm VM gets its (empty) shares at start, since vmlet does not hot-plug virtiofs devices;
   * CreateContainer binds the volumes into them. Absent = no shares.
   */
  volumes?: VolumeHost;
  /** A new VM's id (64 hex) and domain UUID; random unless a test makes them deterministic. */
  newId?: () => string;
  newUuid?: () => string;
}

export class WarmPool {
  private readonly idle: WarmVm[] = [];
  private readonly claims = new Map<string, WarmVm>();
  /** Claimed VMs whose sandboxes are stopping without having used them (holdForReturn). */
  private readonly returning = new Map<string, WarmVm>();
  /** Surplus idle VMs being discarded after a return (finishReturn). */
  private readonly trimming = new Set<Promise<void>>();
  /** Ids of idle, claimed and being-made VMs: their domains and directories are not orphans. */
  private readonly reserved = new Set<string>();
  private refillTimer: NodeJS.Timeout | undefined;
  /** Fires when the oldest claim leaves the demand window, to lower the target and trim. */
  private decayTimer: NodeJS.Timeout | undefined;
  /** When the claims still counting towards the target happened (performance.now(), oldest first). */
  private readonly recentClaims: number[] = [];
  /** Running fill workers, each making one VM at a time. */
  private readonly fillers = new Set<Promise<void>>();
  /** VMs being made now. */
  private making = 0;
  /** A warm VM could not be made: no worker starts another until the retry timer fires. */
  private backingOff = false;
  private closed = false;

  constructor(private readonly options: WarmPoolOptions) {}

  /** The floor. */
  get size(): number {
    return this.options.size;
  }

  /** The ceiling. */
  get max(): number {
    return Math.max(this.options.size, this.options.max ?? this.options.size);
  }

  /** Idle VMs the pool aims at now: the floor plus the claims of the demand window, at most the ceiling. */
  get target(): number {
    if (this.options.size <= 0) return 0;
    this.forgetOldClaims();
    return Math.min(this.max, this.options.size + this.recentClaims.length);
  }

  /** Warm VMs ready to be claimed now. */
  get idleCount(): number {
    return this.idle.length;
  }

  /** Claims served since start (for metrics). */
  claimsTotal = 0;

  /** Whether container id `id` is a warm VM the pool still owns (reconcile must not collect it). */
  owns(id: string): boolean {
    return this.reserved.has(id);
  }

  /** Starts filling the pool (after the daemon's reconcile). */
  async start(): Promise<void> {
    await mkdir(this.options.qmpDir, { recursive: true, mode: 0o700 });
    // Warm QEMUs bind their own QMP sockets there (as the QEMU user, if there is one).
    await giveSocketDir(this.options.qmpDir, this.options.host.qemuUser);
    this.scheduleRefill(0);
  }

  /** Hands the oldest idle VM's netns to sandbox `sandboxId`; undefined when none is idle. */
  claim(sandboxId: string): string | undefined {
    if (this.closed || this.options.size <= 0) return undefined;
    // Demand counts whether or not a VM was idle: a pod that found none is the clearest sign the pool is short.
    this.noteClaim();
    const vm = this.idle.shift();
    if (!vm) {
      // With a ceiling, refill now rather than after the quiet time: this pod pays a cold start
      // anyway, and waiting only delays the VMs the next pods of the burst need. (A fixed-size
      // pool keeps its old behaviour: a refill is pending or running already.)
      if (this.max > this.options.size && !this.backingOff) {
        clearTimeout(this.refillTimer);
        this.refillTimer = undefined;
        this.startFillers();
      }
      return undefined;
    }
    this.scheduleRefill(this.options.refillDelayMs ?? 1000);
    this.claimsTotal++;
    this.claims.set(sandboxId, vm);
    return vm.netnsName;
  }

  /**
   * Takes the VM claimed for `sandboxId` out of the pool: from here on it is the caller's
   * (CreateContainer's), which either makes it the container's VM or discard()s it.
   */
  adopt(sandboxId: string): WarmVm | undefined {
    const vm = this.claims.get(sandboxId);
    if (!vm) return undefined;
    this.claims.delete(sandboxId);
    this.reserved.delete(vm.id);
    return vm;
  }

  /** Destroys an adopted VM's domain; its directory is the container's now, its netns the sandbox's. */
  async discard(vm: WarmVm): Promise<void> {
    await destroyQuietly(this.options.client(), vm.dom);
    await undefineFully(this.options.client(), vm.dom);
    await rm(vm.qmpPath, { force: true });
  }

  /** Discards the VM claimed for `sandboxId`, if any (the sandbox failed or stopped before using it). */
  async release(sandboxId: string): Promise<void> {
    const vm = this.claims.get(sandboxId);
    if (!vm) return;
    this.claims.delete(sandboxId);
    await this.destroyClaimed(vm);
  }

  /**
   * The sandbox `sandboxId` is stopping without having used its claimed VM: from now on no
   * CreateContainer adopts it, and release() (the sandbox's containers being stopped) leaves it
   * alone. True when there is such a VM; finishReturn() then decides its fate once the sandbox's
   * network is down.
   */
  holdForReturn(sandboxId: string): boolean {
    const vm = this.claims.get(sandboxId);
    if (!vm) return false;
    this.claims.delete(sandboxId);
    this.returning.set(sandboxId, vm);
    return true;
  }

  /**
   * A held VM goes back to the idle VMs when its netns is a warm one again (`netnsRewarmed`:
   * netd unwired the sandbox, ran CNI DEL and prewired it anew); otherwise it is destroyed, as
   * release() does. The VM never ran a guest instruction (it was paused since its start and got
   * no device), so it is as new. Destroying it costs libvirt ~1.8 s here (see
   * docs/stop-path.md); giving it back costs nothing. A pool already full again (a refill ran
   * meanwhile) trims its surplus in the background: the VM is the pool's, no longer the sandbox's.
   */
  async finishReturn(sandboxId: string, netnsRewarmed: boolean): Promise<void> {
    const vm = this.returning.get(sandboxId);
    if (!vm) return;
    this.returning.delete(sandboxId);
    if (!netnsRewarmed || this.closed) return this.destroyClaimed(vm);
    // The oldest first: claim() takes from the front.
    this.idle.unshift(vm);
    this.options.logger.debug({ domain: vm.domainName }, 'unused warm VM returned to the pool');
    this.trimSurplus();
  }

  private async destroyClaimed(vm: WarmVm): Promise<void> {
    try {
      await this.destroyVm(vm);
    } finally {
      this.reserved.delete(vm.id);
    }
  }

  /** Discards the newest idle VMs above the target (in the background). */
  private trimSurplus(): void {
    const target = this.target;
    while (this.idle.length > target) this.trim(this.idle.pop()!);
  }

  private trim(vm: WarmVm): void {
    const done = this.discardIdle(vm).finally(() => this.trimming.delete(done));
    this.trimming.add(done);
  }

  /** Discards every idle VM, netns included (daemon shutdown). Claimed ones stay with their sandboxes. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.refillTimer);
    clearTimeout(this.decayTimer);
    await Promise.all([...this.fillers]);
    for (const vm of this.idle.splice(0)) await this.discardIdle(vm);
    await Promise.all([...this.trimming]);
  }

  private noteClaim(): void {
    if (this.max <= this.options.size) return; // a fixed-size pool: demand changes nothing
    this.recentClaims.push(performance.now());
    this.scheduleDecay();
  }

  private forgetOldClaims(): void {
    const since = performance.now() - (this.options.demandWindowMs ?? 60_000);
    while (this.recentClaims.length > 0 && this.recentClaims[0]! <= since) this.recentClaims.shift();
  }

  /** Re-evaluates the target when the oldest counted claim leaves the window. */
  private scheduleDecay(): void {
    if (this.closed || this.decayTimer || this.recentClaims.length === 0) return;
    const due = this.recentClaims[0]! + (this.options.demandWindowMs ?? 60_000) - performance.now();
    this.decayTimer = setTimeout(() => {
      this.decayTimer = undefined;
      if (this.closed) return;
      this.trimSurplus();
      this.scheduleDecay();
    }, Math.max(0, due) + 1);
    this.decayTimer.unref();
  }

  private scheduleRefill(delayMs: number): void {
    if (this.closed || this.options.size <= 0) return;
    clearTimeout(this.refillTimer);
    this.refillTimer = setTimeout(() => {
      this.refillTimer = undefined;
      this.backingOff = false;
      this.startFillers();
    }, delayMs);
    this.refillTimer.unref();
  }

  /** Starts workers up to the parallel budget while the VMs idle or being made are below the target. */
  private startFillers(): void {
    const parallel = Math.max(1, this.options.fillParallel ?? 1);
    while (this.fillers.size < parallel && this.wantsMore()) {
      const worker: Promise<void> = this.fillOne().finally(() => this.fillers.delete(worker));
      this.fillers.add(worker);
    }
  }

  private wantsMore(): boolean {
    return !this.closed && !this.backingOff && this.idle.length + this.making < this.target;
  }

  private async fillOne(): Promise<void> {
    while (this.wantsMore()) {
      this.making++;
      try {
        this.idle.push(await this.makeVm());
      } catch (err) {
        // libvirt or netd trouble: try again later rather than spin.
        if (!this.backingOff) {
          this.backingOff = true;
          this.options.logger.error({ err }, 'could not make a warm VM; retrying in 10 s');
          this.scheduleRefill(10_000);
        }
        return;
      } finally {
        this.making--;
      }
      // A claimed VM returned, or demand decayed, while this one was being made: the pool may be above its target.
      this.trimSurplus();
    }
  }

  private async makeVm(): Promise<WarmVm> {
    const { host, client, netns, logger } = this.options;
    const id = this.options.newId?.() ?? randomBytes(32).toString('hex');
    const dir = join(this.options.dataDir, id);
    const domainName = `${WARM_DOMAIN_PREFIX}${id.slice(0, 12)}`;
    const uuid = this.options.newUuid?.() ?? randomUUID();
    const ports = warmPortsFor(WARM_MAX_NICS);
    const qmpPath = warmQmpPath(this.options.qmpDir, id);
    const started = performance.now();
    this.reserved.add(id);
    const undos: (() => Promise<void>)[] = [async () => void this.reserved.delete(id)];
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      undos.push(() => rm(dir, { recursive: true, force: true }));
      await giveVmDir(dir, host.qemuUser);
      const volumes = this.options.volumes;
      if (volumes) undos.push(() => volumes.release(id));
      const shares = volumes ? await volumes.prepare(id) : [];
      const { netnsName } = await netns.create();
      undos.push(() => netns.delete(netnsName));
      const xml = buildDomainXml({
        name: domainName,
        uuid,
        domainType: host.domainType,
        emulator: host.emulator,
        memoryBytes: host.defaultMemoryBytes,
        vcpus: host.defaultVcpus,
        console: { kind: 'unix', socketPath: consoleSocketPath(this.options.qmpDir, id), logPath: join(dir, CONSOLE_RAW) },
        guestAgentSocket: guestAgentSocketPath(this.options.qmpDir, id),
        nics: [],
        ...(shares.length > 0 ? { shares } : {}),
        emulatorArgs: warmQmpArgs(qmpPath),
        emulatorEnv: vmwrapperEnv(netnsName),
        warm: { hotplugPorts: ports },
        ...(host.qemuUser !== undefined ? { filesLabelledByVmlet: true } : {}),
        metadata: { sandboxId: 'warm', containerId: id, owner: this.options.owner },
      });
      const defined = await client().defineXml(xml);
      undos.push(() => undefineFully(client(), defined));
      const dom = await client().create(defined, DomainCreateFlags.START_PAUSED);
      undos.push(() => destroyQuietly(client(), dom));
      if (this.closed) throw new Error('pool closed while a warm VM was being made');
      logger.debug({ domain: domainName, ms: +(performance.now() - started).toFixed(1) }, 'warm VM ready');
      return { id, domainName, uuid, dom, dir, netnsName, memoryBytes: host.defaultMemoryBytes, vcpus: host.defaultVcpus, domainType: host.domainType, ports, qmpPath };
    } catch (err) {
      for (const undo of undos.reverse()) await undo().catch((e: unknown) => logger.error({ err: e, domain: domainName }, 'undoing a warm VM failed'));
      throw err;
    }
  }

  private async discardIdle(vm: WarmVm): Promise<void> {
    try {
      await this.destroyVm(vm);
      await this.options.netns.delete(vm.netnsName);
    } catch (err) {
      this.options.logger.error({ err: errorText(err), domain: vm.domainName }, 'could not discard a warm VM');
    } finally {
      this.reserved.delete(vm.id);
    }
  }

  /** Domain, directory and volume exports; the netns is the caller's business. */
  private async destroyVm(vm: WarmVm): Promise<void> {
    await this.discard(vm);
    await this.options.volumes?.release(vm.id);
    await rm(vm.dir, { recursive: true, force: true });
  }
}
