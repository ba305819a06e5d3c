/**
 * Containers are VMs: a qcow2 overlay over the image, a cloud-init seed, and a libvirt domain.
 * serve keeps a record per container; libvirt's lifecycle events keep its state current. Every
 * call is idempotent and every multi-step call rolls back what it did when a step fails.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdir, rm, readdir } from 'node:fs/promises';
import { join, basename, resolve } from 'node:path';
import { RecordStore } from '../store/record_store.js';
import { SyncBehind } from '../store/sync_behind.js';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  NotFoundError,
  errorText,
} from '../errors.js';
import type { Logger } from '../log.js';
import type { LibvirtConnection } from '../libvirt/connection.js';
import type { LibvirtClient, DomainRef, LifecycleEvent, TypedParam } from '../libvirt/client.js';
import { isNoDomain, DomainAffect, SchedulerParam, DomainEvent, DomainEventStoppedDetail, DomainShutdownFlags, DomainUndefineFlags, DomainState } from '../libvirt/client.js';
import { buildDomainXml, parseDomainMetadata, validateCputune } from '../libvirt/domain_xml.js';
import type { ImageStore } from '../image/store.js';
import type { SandboxService } from '../sandbox/service.js';
import type { SandboxRecord } from '../sandbox/records.js';
import { parseVmAnnotations, ANNOTATION } from '../guest/annotations.js';
import { buildSeedDocuments } from '../guest/cloudinit.js';
import { writeSeedIso } from '../guest/seed_iso.js';
import { createOverlay } from './disk.js';
import { CONSOLE_RAW } from './console_pumps.js';
import { buildVmSpec, cputuneFor, memoryBytesFor, vcpusFor, type HostFacts } from './domain_spec_builder.js';
import { WARM_MAX_NICS, warmQmpPath, type WarmPool, type WarmVm } from './warm/pool.js';
import { warmNicCommands, warmRootDiskCommands, warmSeedCommand, type QmpCommand } from './warm/hotplug_commands.js';
import { QmpSocket } from '../qmp/socket.js';
import { nicsFromNetwork, type CpuTune } from '../libvirt/domain_spec.js';
import type { VmAnnotations } from '../guest/annotations.js';
import type { VmNetwork } from '../network/types.js';
import type { TapNic } from '../vmwrapper/tap_nic_args.js';
import { containerKey, type ContainerRecord, type ContainerResources, type ContainerState } from './records.js';
import { resolveId, nowNs } from '../cri/validate.js';
import { KeyedLock } from '../store/keyed_lock.js';
import { filterRecords, type RecordFilter } from '../store/record_filter.js';

/** Identifies a vmlet instance by its state dir, in the metadata of the domains it makes. */
export function ownerIdFor(stateDir: string): string {
  return createHash('sha256').update(resolve(stateDir)).digest('hex').slice(0, 16);
}

/** Domains vmlet owns carry this prefix, so leftovers are recognisable. */
export const DOMAIN_PREFIX = 'vmlet-';
export const OVERLAY = 'root.qcow2';
/** Under the state dir: warm VMs' QMP sockets (src/container/warm/pool.ts warmQmpPath). */
export const QMP_DIR = 'qmp';
const SEED = 'seed.iso';
const STATE_POLL_MS = 200;

/** What CreateContainer asks for: the record's caller-given fields. */
export type ContainerSpec = Pick<
  ContainerRecord,
  'sandboxId' | 'image' | 'command' | 'args' | 'workingDir' | 'envs' | 'labels' | 'annotations' | 'mounts' | 'resources'
> & {
  name: string;
  attempt: number;
  /** Relative to the sandbox's log directory ('' for none). */
  logPath: string;
};

export interface ContainerFilter extends RecordFilter<ContainerState> {
  sandboxId?: string;
}

/** The console → CRI log side, kept behind a narrow interface. */
export interface ConsoleLogs {
  start(record: ContainerRecord): Promise<void>;
  stop(containerId: string): Promise<void>;
  reopen(containerId: string): Promise<void>;
}

type Undo = () => Promise<void>;

export class ContainerService {
  private readonly store: RecordStore<ContainerRecord>;
  private readonly syncBehind: SyncBehind;
  private readonly byKey = new Map<string, string>();
  private readonly byDomain = new Map<string, string>();
  private readonly locks = new KeyedLock();
  /** Resolvers waiting for a domain to reach SHUTOFF (StopContainer). */
  private readonly stopWaiters = new Map<string, Set<() => void>>();
  private readonly dataDir: string;
  private readonly qmpDir: string;
  private readonly owner: string;
  /** Containers being created: their domain and directory exist before their record does. */
  private readonly creating = new Set<string>();

  constructor(
    stateDir: string,
    private readonly libvirt: LibvirtConnection,
    private readonly images: ImageStore,
    private readonly sandboxes: SandboxService,
    private readonly consoles: ConsoleLogs,
    private readonly host: HostFacts,
    private readonly logger: Logger,
    private readonly pool?: WarmPool,
  ) {
    // Write-behind: a record change resolves once renamed into place and is fsynced right after.
    // Only a machine crash can lose the last ones, and that takes the VMs too: reconcile then
    // marks a record whose domain is gone EXITED and removes a domain no record owns.
    this.syncBehind = new SyncBehind((err, path) => logger.error({ err, path }, 'could not make a container record durable'));
    this.store = new RecordStore<ContainerRecord>(join(stateDir, 'containers'), logger, this.syncBehind);
    this.dataDir = join(stateDir, 'vms');
    this.qmpDir = join(stateDir, QMP_DIR);
    this.owner = ownerIdFor(stateDir);
  }

  async load(): Promise<void> {
    await mkdir(this.dataDir, { recursive: true, mode: 0o700 });
    await this.store.load();
    for (const r of this.store.values()) {
      this.byKey.set(r.key, r.id);
      this.byDomain.set(r.domainName, r.id);
    }
    this.libvirt.onLifecycle((ev) => this.onLifecycle(ev));
    // Events are not replayed after a reconnect: look at every domain again.
    this.libvirt.onConnected(() => {
      void this.reconcile().catch((err) => this.logger.error({ err }, 'reconcile after libvirt reconnect failed'));
    });
  }

  private client(): LibvirtClient {
    return this.libvirt.current();
  }

  resolve(idOrPrefix: string): string | undefined {
    return resolveId(idOrPrefix, this.store.ids(), 'container');
  }

  mustGet(idOrPrefix: string): ContainerRecord {
    const id = this.resolve(idOrPrefix);
    const r = id === undefined ? undefined : this.store.get(id);
    if (!r) throw new NotFoundError(`container ${idOrPrefix} not found`);
    return r;
  }

  get(id: string): ContainerRecord | undefined {
    return this.store.get(id);
  }

  list(filter: ContainerFilter = {}): ContainerRecord[] {
    const id = filter.id ? this.resolve(filter.id) : undefined;
    if (filter.id && id === undefined) return [];
    const sandboxId = filter.sandboxId ? this.sandboxes.resolve(filter.sandboxId) : undefined;
    if (filter.sandboxId && sandboxId === undefined) return [];
    return filterRecords(this.store.values(), { ...filter, id }, (r) => sandboxId === undefined || r.sandboxId === sandboxId);
  }

  async create(spec: ContainerSpec): Promise<string> {
    const sandbox = this.sandboxes.mustGet(spec.sandboxId);
    if (sandbox.state !== 'READY' || !sandbox.podIps || !sandbox.netnsPath) {
      throw new FailedPreconditionError(`pod sandbox ${sandbox.id} is not ready`);
    }
    const key = containerKey(sandbox.id, spec.name, spec.attempt);
    const existing = this.byKey.get(key);
    if (existing !== undefined) throw new AlreadyExistsError(`container ${spec.name} (attempt ${spec.attempt}) already exists in sandbox ${sandbox.id} as ${existing}`);
    for (const other of this.store.values()) {
      if (other.sandboxId === sandbox.id && other.state !== 'EXITED') {
        throw new FailedPreconditionError(`sandbox ${sandbox.id} already has container ${other.id} (${other.metadata.name}); a vmlet pod runs one VM`);
      }
    }
    const annotations = parseVmAnnotations(sandbox.annotations);
    const image = this.images.status(spec.image);
    if (!image) throw new NotFoundError(`image ${spec.image} is not present; pull it first`);

    // A warm VM claimed by RunPodSandbox is ours from here; it becomes this container's VM if it fits.
    const warm = this.pool?.adopt(sandbox.id);
    let useWarm = warm !== undefined && warmFits(warm, spec.resources, annotations, ANNOTATION.vcpuCount in sandbox.annotations, this.host);
    const id = warm?.id ?? randomBytes(32).toString('hex');
    const dir = join(this.dataDir, id);
    const coldDomainName = `${DOMAIN_PREFIX}${sandbox.id.slice(0, 12)}-${id.slice(0, 12)}`;
    const record: ContainerRecord = {
      id,
      sandboxId: sandbox.id,
      key,
      metadata: { name: spec.name, attempt: spec.attempt },
      image: spec.image,
      imageRef: image.id,
      command: spec.command,
      args: spec.args,
      workingDir: spec.workingDir,
      envs: spec.envs,
      labels: spec.labels,
      annotations: spec.annotations,
      mounts: spec.mounts,
      logPath: spec.logPath && sandbox.logDirectory ? join(sandbox.logDirectory, spec.logPath) : '',
      resources: spec.resources,
      state: 'CREATED',
      createdAtNs: nowNs().toString(),
      domainName: useWarm ? warm!.domainName : coldDomainName,
      domainUuid: useWarm ? warm!.uuid : (annotations.systemUuid ?? randomUUID()),
      dir,
      vm: { memoryBytes: 0, vcpus: 0, domainType: this.host.domainType },
    };
    // The name is taken before any await so that a concurrent duplicate fails.
    this.byKey.set(key, id);
    this.creating.add(id);
    const undos: Undo[] = [async () => void this.byKey.delete(key)];
    // The sandbox's VM side is still being prepared in netd: wait for it beside the disk work.
    // Its plan (the network's description) comes first and is all the seed needs.
    const vmNetwork = this.sandboxes.vmNetwork(sandbox.id);
    const planned = this.sandboxes.vmNetworkPlan(sandbox.id);
    vmNetwork.catch(() => {}); // observed below; no unhandled rejection meanwhile
    planned.catch(() => {});
    try {
      if (warm && !useWarm) await this.pool!.discard(warm);
      else if (warm) undos.push(() => this.pool!.discard(warm));
      await mkdir(dir, { recursive: true, mode: 0o700 });
      undos.push(() => rm(dir, { recursive: true, force: true }));
      // A paused warm VM writes nothing yet: its console pump can start now, beside the rest.
      if (useWarm) undos.push(() => this.consoles.stop(id));
      const pumping = useWarm ? this.consoles.start(record) : Promise.resolve();
      // The overlay and the seed are independent: side by side.
      const overlay = createOverlay({
        backingPath: this.images.blobPath(image.id),
        backingFormat: image.format,
        backingVirtualSize: image.virtualSize,
        overlayPath: join(dir, OVERLAY),
        ...(annotations.rootVolumeSizeBytes !== undefined ? { sizeBytes: annotations.rootVolumeSizeBytes } : {}),
      });
      const seeded = planned.then(({ network }) => {
        const seed = buildSeedDocuments(
          {
            instanceId: id,
            hostname: sandbox.hostname || sandbox.metadata.name,
            annotations,
            env: spec.envs.map((e) => ({ name: e.key, value: e.value })),
            network,
          },
          annotations.cloudInitImageType,
        );
        // Written behind like the records: it lives and dies with the VM's directory.
        return writeSeedIso(join(dir, SEED), seed, this.syncBehind).then(() => network);
      });
      // A warm VM gets each piece as soon as it exists: root disk, NICs, then the seed.
      // NICs as soon as their TAPs exist: at the plan when they were made in advance, else once wired.
      const plugged = useWarm
        ? this.plugWarm(
            warm!,
            cputuneFor(spec.resources),
            annotations.diskDriver,
            overlay.then(() => join(dir, OVERLAY)),
            planned.then((plan) => (plan.tapsReady ? plan.network : vmNetwork)),
            seeded.then(() => join(dir, SEED)),
          )
        : Promise.resolve(true);
      // All settle before anything is rolled back, so no undo races a tool still writing.
      const [overlayDone, seedDone, pluggedDone, readyDone, pumpDone] = await Promise.allSettled([overlay, seeded, plugged, vmNetwork, pumping]);
      if (overlayDone.status === 'rejected') throw overlayDone.reason;
      if (pumpDone.status === 'rejected') throw pumpDone.reason;
      if (readyDone.status === 'rejected') throw readyDone.reason;
      if (seedDone.status === 'rejected') throw seedDone.reason;
      if (pluggedDone.status === 'rejected') throw pluggedDone.reason;
      const network = seedDone.value;
      if (useWarm && !pluggedDone.value) {
        // The pod's interfaces do not fit a warm VM (SR-IOV, too many): a cold VM after all.
        useWarm = false;
        await this.pool!.discard(warm!);
        await this.consoles.stop(id); // a cold VM's pump starts with the VM
        record.domainName = coldDomainName;
        record.domainUuid = annotations.systemUuid ?? randomUUID();
      }
      if (useWarm) {
        record.warm = true;
        record.vm = { memoryBytes: warm!.memoryBytes, vcpus: warm!.vcpus, domainType: warm!.domainType };
        this.byDomain.set(record.domainName, id);
        undos.push(async () => void this.byDomain.delete(record.domainName));
        await this.store.put(record);
        return id;
      }
      const vmSpec = buildVmSpec(
        {
          containerId: id,
          sandboxId: sandbox.id,
          owner: this.owner,
          domainName: record.domainName,
          domainUuid: record.domainUuid,
          resources: spec.resources,
          annotations,
          network,
          netnsName: basename(sandbox.netnsPath),
          overlayPath: join(dir, OVERLAY),
          seedPath: join(dir, SEED),
          consolePath: join(dir, CONSOLE_RAW),
          socketDir: this.qmpDir,
        },
        this.host,
        ANNOTATION.vcpuCount in sandbox.annotations,
      );
      record.vm = { memoryBytes: vmSpec.memoryBytes, vcpus: vmSpec.vcpus, domainType: vmSpec.domainType };
      const dom = await this.client().defineXml(buildDomainXml(vmSpec));
      undos.push(() => this.undefine(dom));
      this.byDomain.set(record.domainName, id);
      undos.push(async () => void this.byDomain.delete(record.domainName));
      await this.store.put(record);
      return id;
    } catch (err) {
      for (const undo of undos.reverse()) {
        await undo().catch((e: unknown) => this.logger.error({ err: e, containerId: id }, 'rollback step of CreateContainer failed'));
      }
      throw err;
    } finally {
      this.creating.delete(id);
    }
  }

  async start(idOrPrefix: string): Promise<void> {
    const r = this.mustGet(idOrPrefix);
    await this.locks.run(r.id, async () => {
      const current = this.store.get(r.id)!;
      if (current.state === 'RUNNING') return;
      if (current.state !== 'CREATED') throw new FailedPreconditionError(`container ${r.id} is ${current.state}; only a created container can start`);
      const sandbox = this.sandboxes.get(current.sandboxId);
      if (!sandbox || sandbox.state !== 'READY') throw new FailedPreconditionError(`pod sandbox ${current.sandboxId} is not ready`);
      // Also brings back a DHCP responder a netd restart could not restore.
      await this.sandboxes.vmNetwork(current.sandboxId);
      const pump = this.consoles.start(current);
      try {
        // The pump is running before the VM does, so a failed Start leaves no VM running.
        await pump;
        // A warm VM is already running QEMU, paused before its first instruction.
        if (current.warm) await this.resumeWarm(current);
        else await this.client().create(await this.mustLookup(current));
      } catch (err) {
        await pump.catch(() => {});
        await this.consoles.stop(r.id).catch(() => {});
        throw err;
      }
      await this.store.put({ ...current, state: 'RUNNING', startedAtNs: nowNs().toString() });
    });
  }

  /**
   * Asks the guest to power off (ACPI) and destroys it when `timeoutSeconds` pass; 0 destroys at
   * once. Succeeds for a container that is not running.
   */
  async stop(idOrPrefix: string, timeoutSeconds: number): Promise<void> {
    const r = this.mustGet(idOrPrefix);
    await this.locks.run(r.id, async () => {
      const current = this.store.get(r.id)!;
      if (current.state !== 'RUNNING') return;
      const dom = await this.lookup(current);
      let graceful = false;
      if (dom && (await this.isActive(dom))) {
        if (timeoutSeconds > 0) {
          const off = this.waitForShutoff(current.domainName, timeoutSeconds * 1000);
          try {
            await this.client().shutdown(dom, DomainShutdownFlags.ACPI_POWER_BTN);
            graceful = await off.done;
          } catch (err) {
            off.cancel();
            this.logger.warn({ err, containerId: r.id }, 'ACPI shutdown request failed; destroying');
          }
        }
        if (!graceful) await this.destroyIfActive(dom);
      }
      await this.markExited(r.id, graceful ? { exitCode: 0, reason: 'Completed' } : { exitCode: 137, reason: 'Error', message: 'VM destroyed after the stop timeout' });
    });
  }

  /** Idempotent: removes a running container forcibly; an unknown id is already removed. */
  async remove(idOrPrefix: string): Promise<void> {
    const id = this.resolve(idOrPrefix);
    if (id === undefined) return;
    await this.locks.run(id, async () => {
      const r = this.store.get(id);
      if (!r) return;
      const dom = await this.lookup(r);
      if (dom) {
        await this.destroyIfActive(dom);
        await this.undefine(dom);
      }
      await this.consoles.stop(id);
      // The pump's saved position lives in r.dir and goes with it.
      await rm(r.dir, { recursive: true, force: true });
      if (r.warm) await rm(warmQmpPath(this.qmpDir, id), { force: true });
      await this.store.delete(id);
      this.byKey.delete(r.key);
      this.byDomain.delete(r.domainName);
    });
  }

  async stopAllOf(sandboxId: string): Promise<void> {
    await this.pool?.release(sandboxId);
    for (const r of this.list({ sandboxId })) await this.stop(r.id, 0);
  }

  async removeAllOf(sandboxId: string): Promise<void> {
    await this.pool?.release(sandboxId);
    for (const r of this.list({ sandboxId })) await this.remove(r.id);
  }

  /**
   * `cont` on the warm domain's own QMP socket (~2 ms; libvirt's resume costs ~12 ms here).
   * libvirt learns of it from QEMU's RESUME event and shows the domain running (unpaused). Without
   * the socket (gone with a QEMU that vmlet did not see exit) libvirt resumes it.
   */
  private async resumeWarm(r: ContainerRecord): Promise<void> {
    let qmp: QmpSocket;
    try {
      qmp = await QmpSocket.connect(warmQmpPath(this.qmpDir, r.id));
    } catch (err) {
      this.logger.warn({ err: errorText(err), containerId: r.id }, 'warm VM QMP socket unusable; resuming through libvirt');
      await this.client().resume(await this.mustLookup(r));
      return;
    }
    try {
      await qmp.execute('cont');
    } finally {
      qmp.close();
    }
  }

  /** RunPodSandbox's side of the warm pool: the netns of a warm VM to adopt, if one is idle. */
  claimWarmNetns(sandboxId: string): string | undefined {
    return this.pool?.claim(sandboxId);
  }

  async releaseWarm(sandboxId: string): Promise<void> {
    await this.pool?.release(sandboxId);
  }

  /**
   * Plugs the container's pieces into a warm VM as each becomes ready. Resolves false, plugging
   * no NIC, when the pod's interfaces cannot go to a warm VM (the caller then makes a cold one).
   */
  private async plugWarm(vm: WarmVm, cputune: CpuTune, diskDriver: VmAnnotations['diskDriver'], overlayPath: Promise<string>, network: Promise<VmNetwork>, seedPath: Promise<string>): Promise<boolean> {
    const qmp = QmpSocket.connect(vm.qmpPath);
    qmp.catch(() => {}); // observed by every run() and below
    const run = async (commands: QmpCommand[]): Promise<void> => {
      const socket = await qmp;
      for (const c of commands) await socket.execute(c.execute, c.arguments);
    };
    try {
      const root = overlayPath.then((path) => run(warmRootDiskCommands(path, diskDriver)));
      const nics = network.then(async (net) => {
        const taps = warmTapNics(net);
        if (!taps) return false;
        await run(warmNicCommands(taps, vm.ports));
        return true;
      });
      const seed = seedPath.then((path) => run([warmSeedCommand(path)]));
      const tuned = Object.keys(cputune).length > 0 ? this.client().setSchedulerParametersFlags(vm.dom, schedulerParams(cputune), DomainAffect.LIVE | DomainAffect.CONFIG) : undefined;
      // allSettled first: nothing may still be talking to QEMU once this returns.
      const results = await Promise.allSettled([root, nics, seed, tuned]);
      for (const r of results) if (r.status === 'rejected') throw r.reason;
      return (results[1] as PromiseFulfilledResult<boolean>).value;
    } finally {
      await qmp.then((socket) => socket.close(), () => undefined);
    }
  }

  /** Makes every record change so far durable (daemon shutdown). */
  flush(): Promise<void> {
    return this.syncBehind.flush();
  }

  async reopenLog(idOrPrefix: string): Promise<void> {
    const r = this.mustGet(idOrPrefix);
    if (r.state !== 'RUNNING') throw new FailedPreconditionError(`container ${r.id} is not running`);
    await this.consoles.reopen(r.id);
  }

  async domainXml(r: ContainerRecord): Promise<string | undefined> {
    const dom = await this.lookup(r);
    return dom ? this.client().getXmlDesc(dom) : undefined;
  }

  async domainRef(r: ContainerRecord): Promise<DomainRef | undefined> {
    return this.lookup(r);
  }

  async updateResources(idOrPrefix: string, resources: ContainerResources, apply: (dom: DomainRef, r: ContainerRecord) => Promise<void>): Promise<void> {
    const r = this.mustGet(idOrPrefix);
    await this.locks.run(r.id, async () => {
      const current = this.store.get(r.id)!;
      if (current.state === 'EXITED') throw new FailedPreconditionError(`container ${r.id} has exited`);
      const dom = await this.lookup(current);
      if (!dom) throw new FailedPreconditionError(`libvirt domain ${current.domainName} is gone`);
      await apply(dom, current);
      await this.store.put({ ...current, resources: { ...current.resources, ...resources } });
    });
  }

  /**
   * Brings records and libvirt in line after a start or a reconnect: running VMs stay RUNNING (their
   * console pumps resume), vanished or stopped ones become EXITED, and vmlet domains and VM
   * directories that no record owns are removed.
   */
  async reconcile(): Promise<void> {
    const client = this.client();
    const domains = await client.listAllDomains();
    const seen = new Set<string>();
    for (const dom of domains) {
      if (!dom.name.startsWith(DOMAIN_PREFIX)) continue;
      const id = this.byDomain.get(dom.name);
      if (id !== undefined && !this.store.get(id)) continue; // being created
      if (id === undefined) {
        // Only a domain whose metadata says this vmlet (this state dir) made it is ours to remove;
        // another vmlet on the same libvirtd keeps its VMs.
        const meta = parseDomainMetadata(await client.getXmlDesc(dom).catch(() => ''));
        if (meta && meta.owner === this.owner && !this.store.get(meta.containerId) && !this.creating.has(meta.containerId) && !this.pool?.owns(meta.containerId)) {
          this.logger.warn({ domain: dom.name }, 'removing a vmlet domain no record owns');
          await this.destroyIfActive(dom).catch(() => {});
          await this.undefine(dom).catch((err) => this.logger.error({ err, domain: dom.name }, 'could not undefine orphan domain'));
        }
        continue;
      }
      seen.add(id);
      const r = this.store.get(id)!;
      const active = await this.isActive(dom);
      if (r.state === 'RUNNING') {
        if (active) await this.consoles.start(r);
        else await this.markExited(id, { exitCode: 0, reason: 'Completed', message: 'VM powered off while vmlet was away' });
      }
    }
    for (const r of this.store.values()) {
      if (seen.has(r.id) || r.state === 'EXITED') continue;
      await this.markExited(r.id, { exitCode: 255, reason: 'Error', message: 'libvirt domain vanished' });
    }
    const vmDirs = await readdir(this.dataDir).catch(() => [] as string[]);
    const kept = (id: string) => this.store.get(id) !== undefined || this.creating.has(id) || this.pool?.owns(id) === true;
    for (const name of vmDirs) {
      if (/^[0-9a-f]{64}$/.test(name) && !kept(name)) {
        this.logger.warn({ dir: name }, 'removing a VM directory no record owns');
        await rm(join(this.dataDir, name), { recursive: true, force: true });
      }
    }
    // A QMP socket a QEMU killed outright left behind (a live one is named after a kept VM's id).
    const liveQmp = new Set(vmDirs.filter(kept).map((id) => warmQmpPath(this.qmpDir, id)));
    for (const name of await readdir(this.qmpDir).catch(() => [] as string[])) {
      const path = join(this.qmpDir, name);
      if (/^[0-9a-f]{16}$/.test(name) && !liveQmp.has(path)) await rm(path, { force: true });
    }
  }

  private onLifecycle(ev: LifecycleEvent): void {
    const id = this.byDomain.get(ev.domain.name);
    if (id === undefined) return;
    if (ev.event === DomainEvent.STOPPED || ev.event === DomainEvent.CRASHED) {
      for (const wake of this.stopWaiters.get(ev.domain.name) ?? []) wake();
      const r = this.store.get(id);
      // A stop in progress records its own outcome.
      if (!r || r.state !== 'RUNNING' || this.locks.held(id)) return;
      const clean = ev.event === DomainEvent.STOPPED && ev.detail === DomainEventStoppedDetail.SHUTDOWN;
      void this.locks.run(id, () =>
        this.markExited(id, clean ? { exitCode: 0, reason: 'Completed' } : { exitCode: 1, reason: 'Error', message: `VM stopped (libvirt event ${ev.event}, detail ${ev.detail})` }),
      ).catch((err) => this.logger.error({ err, containerId: id }, 'could not record a VM exit'));
    }
  }

  private async markExited(id: string, outcome: { exitCode: number; reason: string; message?: string }): Promise<void> {
    const r = this.store.get(id);
    if (!r || r.state === 'EXITED') return;
    await this.consoles.stop(id).catch((err) => this.logger.warn({ err, containerId: id }, 'console pump stop failed'));
    await this.store.put({
      ...r,
      state: 'EXITED',
      finishedAtNs: nowNs().toString(),
      exitCode: outcome.exitCode,
      reason: outcome.reason,
      ...(outcome.message ? { message: outcome.message } : {}),
    });
  }

  /** Resolves true when the domain stops within `ms`, false otherwise; events first, polling as a backstop. */
  private waitForShutoff(domainName: string, ms: number): { done: Promise<boolean>; cancel(): void } {
    let finish: (v: boolean) => void = () => {};
    const done = new Promise<boolean>((resolve) => (finish = resolve));
    const waiters = this.stopWaiters.get(domainName) ?? new Set();
    this.stopWaiters.set(domainName, waiters);
    const wake = () => finish(true);
    waiters.add(wake);
    const timer = setTimeout(() => finish(false), ms);
    const poll = setInterval(() => {
      void this.client()
        .lookupByName(domainName)
        .then((dom) => this.client().getState(dom))
        .then((s) => s.state === DomainState.SHUTOFF && finish(true))
        .catch((err) => isNoDomain(err) && finish(true));
    }, STATE_POLL_MS * 5);
    void done.then(() => {
      clearTimeout(timer);
      clearInterval(poll);
      waiters.delete(wake);
      if (waiters.size === 0) this.stopWaiters.delete(domainName);
    });
    return { done, cancel: () => finish(false) };
  }

  private async mustLookup(r: ContainerRecord): Promise<DomainRef> {
    const dom = await this.lookup(r);
    if (!dom) throw new FailedPreconditionError(`libvirt domain ${r.domainName} of container ${r.id} is gone`);
    return dom;
  }

  private async lookup(r: ContainerRecord): Promise<DomainRef | undefined> {
    try {
      return await this.client().lookupByName(r.domainName);
    } catch (err) {
      if (isNoDomain(err)) return undefined;
      throw err;
    }
  }

  private async isActive(dom: DomainRef): Promise<boolean> {
    try {
      const s = await this.client().getState(dom);
      return s.state !== DomainState.SHUTOFF && s.state !== DomainState.NOSTATE;
    } catch (err) {
      if (isNoDomain(err)) return false;
      throw err;
    }
  }

  private async destroyIfActive(dom: DomainRef): Promise<void> {
    try {
      if (await this.isActive(dom)) await this.client().destroy(dom);
    } catch (err) {
      // Already stopped between the check and the call: that is what we wanted.
      if (isNoDomain(err) || /not running/i.test(errorText(err))) return;
      throw err;
    }
  }

  private async undefine(dom: DomainRef): Promise<void> {
    try {
      await this.client().undefine(dom, DomainUndefineFlags.MANAGED_SAVE | DomainUndefineFlags.SNAPSHOTS_METADATA | DomainUndefineFlags.NVRAM);
    } catch (err) {
      if (!isNoDomain(err)) throw err;
    }
  }

}

/**
 * Whether a warm VM has the shape this container asks for. Pure. NICs are checked later
 * (warmTapNics), once the sandbox's VM side is known.
 */
export function warmFits(vm: WarmVm, resources: ContainerResources, annotations: VmAnnotations, vcpuAnnotationGiven: boolean, host: HostFacts): boolean {
  try {
    if (memoryBytesFor(resources, host) !== vm.memoryBytes) return false;
    if (vcpusFor(resources, annotations, vcpuAnnotationGiven, host) !== vm.vcpus) return false;
  } catch {
    return false; // invalid resources: the cold path reports them
  }
  try {
    validateCputune(cputuneFor(resources)); // applied live (plugWarm); bad values: the cold path reports them
  } catch {
    return false;
  }
  // A CPU model or a system UUID are fixed when QEMU starts.
  if (annotations.systemUuid !== undefined) return false;
  if (annotations.cpuModel === 'host-model' && vm.domainType === 'kvm') return false;
  return vm.domainType === host.domainType;
}

/** The TAP NICs of a sandbox network, or undefined when they cannot go to a warm VM. */
export function warmTapNics(network: VmNetwork): TapNic[] | undefined {
  const nics = nicsFromNetwork(network);
  if (nics.length > WARM_MAX_NICS) return undefined;
  const taps: TapNic[] = [];
  for (const n of nics) {
    if (n.kind !== 'tap') return undefined;
    taps.push({ tap: n.tap, mac: n.mac, mtu: n.mtu });
  }
  return taps;
}

/** cputune as libvirt scheduler parameters (as UpdateContainerResources sends them). */
export function schedulerParams(tune: CpuTune): TypedParam[] {
  const params: TypedParam[] = [];
  if (tune.shares !== undefined) params.push({ field: SchedulerParam.CPU_SHARES, type: 'ullong', value: BigInt(tune.shares) });
  if (tune.period !== undefined) params.push({ field: SchedulerParam.VCPU_PERIOD, type: 'ullong', value: BigInt(tune.period) });
  if (tune.quota !== undefined) params.push({ field: SchedulerParam.VCPU_QUOTA, type: 'llong', value: BigInt(tune.quota) });
  return params;
}
