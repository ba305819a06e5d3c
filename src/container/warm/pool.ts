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
  /** How many idle warm VMs to keep; 0 turns the pool off. */
  size: number;
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
  private filling: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly options: WarmPoolOptions) {}

  get size(): number {
    return this.options.size;
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
    const vm = this.idle.shift();
    if (!vm) return undefined;
    this.claimsTotal++;
    this.claims.set(sandboxId, vm);
    this.scheduleRefill(this.options.refillDelayMs ?? 1000);
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
    while (this.idle.length > this.options.size) this.trim(this.idle.pop()!);
  }

  private async destroyClaimed(vm: WarmVm): Promise<void> {
    try {
      await this.destroyVm(vm);
    } finally {
      this.reserved.delete(vm.id);
    }
  }

  private trim(vm: WarmVm): void {
    const done = this.discardIdle(vm).finally(() => this.trimming.delete(done));
    this.trimming.add(done);
  }

  /** Discards every idle VM, netns included (daemon shutdown). Claimed ones stay with their sandboxes. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.refillTimer);
    await this.filling;
    for (const vm of this.idle.splice(0)) await this.discardIdle(vm);
    await Promise.all([...this.trimming]);
  }

  private scheduleRefill(delayMs: number): void {
    if (this.closed || this.options.size <= 0) return;
    clearTimeout(this.refillTimer);
    this.refillTimer = setTimeout(() => {
      this.refillTimer = undefined;
      if (this.filling) return; // the running fill tops up to size itself
      this.filling = this.fill().finally(() => (this.filling = undefined));
    }, delayMs);
    this.refillTimer.unref();
  }

  private async fill(): Promise<void> {
    while (!this.closed && this.idle.length < this.options.size) {
      try {
        this.idle.push(await this.makeVm());
        // A claimed VM returned while this one was being made may have filled the pool already.
        while (this.idle.length > this.options.size) this.trim(this.idle.pop()!);
      } catch (err) {
        // libvirt or netd trouble: try again later rather than spin.
        this.options.logger.error({ err }, 'could not make a warm VM; retrying in 10 s');
        this.scheduleRefill(10_000);
        return;
      }
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
