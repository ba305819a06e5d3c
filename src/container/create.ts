/**
 * CreateContainer: the container's directory, its root disk overlay and cloud-init seed, and its
 * VM: a warm VM adopted (its pieces plugged in through QMP as each exists) or a cold domain
 * defined. Every step registers its undo; a failure rolls back all of them, newest first.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../errors.js';
import type { DataDisk, Share } from '../libvirt/domain_spec.js';
import { parseVmAnnotations, ANNOTATION, type VmAnnotations } from '../guest/annotations.js';
import { buildSeedDocuments } from '../guest/cloudinit.js';
import { writeSeedIso } from '../guest/seed_iso.js';
import type { ImageRecord } from '../image/types.js';
import type { VmNetwork } from '../network/types.js';
import type { SandboxRecord } from '../sandbox/records.js';
import { undefineFully } from '../libvirt/domain_ops.js';
import { domainOps, type ContainerContext } from './context.js';
import { defineColdDomain } from './cold_domain.js';
import { createOverlay } from './disk.js';
import { cputuneFor } from './domain_spec_builder.js';
import { OVERLAY, SEED, coldDomainName } from './layout.js';
import { containerKey, type ContainerRecord } from './records.js';
import { plugWarm } from './warm/adopt.js';
import { giveOverlay, giveSeed, giveVmDir } from '../vmwrapper/qemu_access.js';
import { warmFits } from './warm/fit.js';
import type { WarmVm } from './warm/pool.js';
import { resolveHostPath } from './volumes/host_path.js';
import { planVolumes, type CheckedMount, type VolumePlan } from './volumes/plan.js';
import { ROOT_CONTAINER_PATH, assignSerials, planBlockDevices, type BlockDevicePlan, type BlockDisk } from './block_devices/plan.js';
import { checkPersistentRoot, initialisePersistentRoot, type CheckedRoot, type RootImage } from './block_devices/persistent_root.js';
import type { DiskFormat } from '../image/disk_format.js';
import { MAX_DATA_DISKS } from '../libvirt/domain_xml.js';
import { blockLinkBootcmd } from './block_devices/guest_links.js';
import { faultPoint } from '../fault_points.js';
import { prepareContainerLogDir } from '../console/log_dir.js';

/** What CreateContainer asks for: the record's caller-given fields. */
export type ContainerSpec = Pick<
  ContainerRecord,
  'sandboxId' | 'image' | 'command' | 'args' | 'workingDir' | 'envs' | 'labels' | 'annotations' | 'mounts' | 'resources' | 'devices'
> & {
  /** Image volumes (CRI Mount.image), shaped by the CRI layer: the image as named and where. */
  imageVolumes?: { container_path: string; image: string }[];
  name: string;
  attempt: number;
  /** Relative to the sandbox's log directory ('' for none). */
  logPath: string;
};

type Undo = () => Promise<void>;

export async function createContainer(ctx: ContainerContext, spec: ContainerSpec): Promise<string> {
  return new ContainerCreation(ctx, spec, checkCreate(ctx, spec)).run();
}

interface CheckedCreate {
  sandbox: SandboxRecord;
  key: string;
  annotations: VmAnnotations;
  image: ImageRecord;
  imageVolumes: CheckedImageVolume[];
}

interface CheckedImageVolume {
  containerPath: string;
  /** The image as named in the mount. */
  name: string;
  image: ImageRecord;
}

/** Preconditions, before anything is taken: a ready sandbox without a live container, a new name, a pulled image. */
function checkCreate(ctx: ContainerContext, spec: ContainerSpec): CheckedCreate {
  const sandbox = ctx.sandboxes.mustGet(spec.sandboxId);
  if (sandbox.state !== 'READY' || !sandbox.podIps || !sandbox.netnsPath) {
    throw new FailedPreconditionError(`pod sandbox ${sandbox.id} is not ready`);
  }
  const key = containerKey(sandbox.id, spec.name, spec.attempt);
  const existing = ctx.byKey.get(key);
  if (existing !== undefined) throw new AlreadyExistsError(`container ${spec.name} (attempt ${spec.attempt}) already exists in sandbox ${sandbox.id} as ${existing}`);
  for (const other of ctx.store.values()) {
    if (other.sandboxId === sandbox.id && other.state !== 'EXITED') {
      throw new FailedPreconditionError(`sandbox ${sandbox.id} already has container ${other.id} (${other.metadata.name}); a vmlet pod runs one VM`);
    }
  }
  const annotations = parseVmAnnotations(sandbox.annotations);
  const image = ctx.images.status(spec.image);
  if (!image) throw new NotFoundError(`image ${spec.image} is not present; pull it first`);
  const imageVolumes = (spec.imageVolumes ?? []).map((v) => {
    const held = ctx.images.status(v.image);
    // kubelet pulls an image volume's image before CreateContainer; vmlet does not pull here.
    if (!held) throw new NotFoundError(`config.mounts image volume at ${v.container_path}: image ${v.image} is not present; pull it first`);
    return { containerPath: v.container_path, name: v.image, image: held };
  });
  return { sandbox, key, annotations, image, imageVolumes };
}

/** One CreateContainer call, as named steps over the state they share. */
class ContainerCreation {
  private readonly sandbox: SandboxRecord;
  private readonly annotations: VmAnnotations;
  private readonly image: ImageRecord;
  private readonly vcpuAnnotationGiven: boolean;
  /** A warm VM claimed by RunPodSandbox is ours from here; it becomes this container's VM if it fits. */
  private readonly warm: WarmVm | undefined;
  private useWarm: boolean;
  private readonly id: string;
  private readonly dir: string;
  private readonly coldDomainName: string;
  private readonly record: ContainerRecord;
  private readonly undos: Undo[] = [];
  private volumes: VolumePlan = { entries: [], bootcmd: [] };
  private shares: Share[] = [];
  private blocks: BlockDevicePlan = { dataDisks: [] };
  /** A persistent root device checked against the image (checkPersistentRoot); absent = an overlay. */
  private persistentRoot: CheckedRoot | undefined;
  private readonly imageVolumes: CheckedImageVolume[];
  /** Image volumes as disks, serials assigned together with the block devices'. */
  private imageDisks: { disk: BlockDisk; format: DiskFormat }[] = [];

  constructor(
    private readonly ctx: ContainerContext,
    private readonly spec: ContainerSpec,
    checked: CheckedCreate,
  ) {
    const { sandbox, annotations, image } = checked;
    this.imageVolumes = checked.imageVolumes;
    this.sandbox = sandbox;
    this.annotations = annotations;
    this.image = image;
    this.vcpuAnnotationGiven = ANNOTATION.vcpuCount in sandbox.annotations;
    this.warm = ctx.pool?.adopt(sandbox.id);
    // A persistent root disk never takes a warm VM: see docs/block-volumes.md.
    const persistentRoot = (spec.devices ?? []).some((d) => d.container_path === ROOT_CONTAINER_PATH);
    this.useWarm = !persistentRoot && this.warm !== undefined && warmFits(this.warm, spec.resources, annotations, this.vcpuAnnotationGiven, ctx.host);
    this.id = this.warm?.id ?? ctx.newId();
    this.dir = join(ctx.dataDir, this.id);
    this.coldDomainName = coldDomainName(sandbox.id, this.id);
    this.record = this.newRecord(checked.key);
  }

  private newRecord(key: string): ContainerRecord {
    const { spec, sandbox, warm, useWarm } = this;
    return {
      id: this.id,
      sandboxId: sandbox.id,
      key,
      metadata: { name: spec.name, attempt: spec.attempt },
      image: spec.image,
      imageRef: this.image.id,
      command: spec.command,
      args: spec.args,
      workingDir: spec.workingDir,
      envs: spec.envs,
      labels: spec.labels,
      annotations: spec.annotations,
      mounts: spec.mounts,
      ...(spec.devices && spec.devices.length > 0 ? { devices: spec.devices } : {}),
      ...(this.imageVolumes.length > 0
        ? { imageMounts: this.imageVolumes.map((v) => ({ container_path: v.containerPath, image: v.name, imageRef: v.image.id })) }
        : {}),
      logPath: spec.logPath && sandbox.logDirectory ? join(sandbox.logDirectory, spec.logPath) : '',
      resources: spec.resources,
      state: 'CREATED',
      createdAtNs: this.ctx.clock.nowNs().toString(),
      domainName: useWarm ? warm!.domainName : this.coldDomainName,
      domainUuid: useWarm ? warm!.uuid : (this.annotations.systemUuid ?? this.ctx.newUuid()),
      dir: this.dir,
      vm: { memoryBytes: 0, vcpus: 0, domainType: this.ctx.host.domainType },
    };
  }

  async run(): Promise<string> {
    const { ctx, record, id } = this;
    // The name is taken before any await so that a concurrent duplicate fails.
    ctx.byKey.set(record.key, id);
    ctx.creating.add(id);
    this.undos.push(async () => void ctx.byKey.delete(record.key));
    // The sandbox's VM side is still being prepared in netd: wait for it beside the disk work.
    // Its plan (the network's description) comes first and is all the seed needs.
    const vmNetwork = ctx.sandboxes.vmNetwork(this.sandbox.id);
    const planned = ctx.sandboxes.vmNetworkPlan(this.sandbox.id);
    vmNetwork.catch(() => {}); // observed below; no unhandled rejection meanwhile
    planned.catch(() => {});
    try {
      // First: from here on a failure (a refused mount or device included) rolls the adopted warm VM back.
      await this.settleWarmVm();
      this.volumes = planVolumes(await this.checkMounts());
      this.blocks = await this.planBlockDevices();
      this.imageDisks = this.planImageDisks();
      if (record.logPath) await prepareContainerLogDir(this.sandbox.logDirectory, this.spec.logPath);
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      this.undos.push(() => rm(this.dir, { recursive: true, force: true }));
      await giveVmDir(this.dir, ctx.host.qemuUser);
      await this.grantBlockDevices();
      await this.checkPersistentRoot();
      await this.bindVolumes();
      faultPoint('container.create.after-vm-dir');
      const { network, plugged } = await this.buildPieces(vmNetwork, planned);
      if (this.useWarm && !plugged) await this.fallBackToCold();
      if (this.useWarm) await this.keepWarmVm();
      else await this.defineColdVm(network);
      return id;
    } catch (err) {
      await this.rollBack();
      throw err;
    } finally {
      ctx.creating.delete(id);
    }
  }

  /** Each mount's host path, resolved and checked (host_path.ts); nothing is taken yet. */
  private async checkMounts(): Promise<CheckedMount[]> {
    const mounts = this.spec.mounts;
    if (mounts.length === 0) return [];
    if (!this.ctx.volumes) throw new InvalidArgumentError('config.mounts: this vmlet shares no volumes with its VMs');
    if (this.annotations.userDataScript !== undefined) {
      this.ctx.logger.warn({ containerId: this.id, mounts: mounts.map((m) => m.container_path) }, 'VirtletCloudInitUserDataScript replaces user-data: the guest must mount the volumes itself (tags vmlet-ro, vmlet-rw)');
    }
    return Promise.all(
      mounts.map(async (m, i) => {
        const name = `config.mounts[${i}] (${m.container_path})`;
        const resolved = await resolveHostPath(m.host_path, name);
        return { name, containerPath: m.container_path, hostPath: resolved.path, kind: resolved.kind, readonly: m.readonly };
      }),
    );
  }

  /** The pod's block devices, checked on the host (block_devices/plan.ts); nothing is taken yet. */
  private async planBlockDevices(): Promise<BlockDevicePlan> {
    const devices = this.spec.devices ?? [];
    if (devices.length === 0) return { dataDisks: [] };
    const host = this.ctx.blockDevices;
    if (!host) throw new InvalidArgumentError('config.devices: this vmlet attaches no block devices to its VMs');
    const plan = await planBlockDevices(devices, host.inspector);
    if (plan.root?.readOnly) throw new InvalidArgumentError(`config.devices: persistent root disk ${plan.root.hostPath} (container_path "/"): permissions lack "w"; vmlet writes the image onto it`);
    return plan;
  }

  /**
   * Each image volume is the store's blob as a read-only disk (QEMU reads the blob, 0644 in a 0755
   * directory, and never writes it). Serials come from container paths, as the block devices'
   * do, assigned over both lists so that no two disks of the VM share one.
   */
  private planImageDisks(): { disk: BlockDisk; format: DiskFormat }[] {
    if (this.imageVolumes.length === 0) return [];
    const total = this.blocks.dataDisks.length + this.imageVolumes.length;
    if (total > MAX_DATA_DISKS) {
      throw new InvalidArgumentError(`config.devices and image volumes give ${total} disks; a VM takes at most ${MAX_DATA_DISKS} besides its root disk`);
    }
    const taken = new Set(this.blocks.dataDisks.map((d) => d.containerPath));
    const disks = this.imageVolumes.map((v) => {
      if (taken.has(v.containerPath)) throw new InvalidArgumentError(`config.mounts image volume at ${v.containerPath}: a device has the same container_path`);
      taken.add(v.containerPath);
      return { disk: { hostPath: this.ctx.images.blobPath(v.image.id), containerPath: v.containerPath, readOnly: true, serial: '' }, format: v.image.format };
    });
    assignSerials([...this.blocks.dataDisks, ...disks.map((d) => d.disk)]);
    return disks;
  }

  /**
   * The block devices' nodes (data disks and the persistent root) become QEMU's for the VM's
   * lifetime (block_devices/grants.ts). The grant also marks them taken: a device another VM holds,
   * or a creation in flight took, is refused here, before the root device's header is read.
   */
  private async grantBlockDevices(): Promise<void> {
    const { ctx, id } = this;
    const disks: BlockDisk[] = [...(this.blocks.root ? [this.blocks.root] : []), ...this.blocks.dataDisks];
    if (disks.length === 0) return;
    this.undos.push(() => ctx.blockDevices!.grants.restore(id));
    await ctx.blockDevices!.grants.grant(id, disks, ctx.host.qemuUser);
  }

  private dataDisks(): DataDisk[] {
    return [
      ...this.blocks.dataDisks.map((d) => ({ path: d.hostPath, serial: d.serial, readOnly: d.readOnly })),
      ...this.imageDisks.map(({ disk, format }) => ({ path: disk.hostPath, serial: disk.serial, readOnly: true, imageFormat: format })),
    ];
  }

  /**
   * The persistent root device (container_path "/"), if any, already granted to this VM: its
   * header read and the image's size checked against it. Nothing is written yet.
   */
  private async checkPersistentRoot(): Promise<void> {
    const root = this.blocks.root;
    if (!root) return;
    this.persistentRoot = await checkPersistentRoot(this.ctx.blockDevices!.rootIo, root.hostPath, this.rootImage());
    const { device, payloadOffset, payloadBytes } = this.persistentRoot;
    this.record.persistentRoot = { device, offset: payloadOffset, size: payloadBytes };
  }

  private rootImage(): RootImage {
    const { image } = this;
    return { digest: image.id, path: this.ctx.images.blobPath(image.id), format: image.format, virtualSize: Number(image.virtualSize) };
  }

  /** The image onto the persistent root device when its header asks for it (persistent_root.ts). */
  private writePersistentRoot(root: CheckedRoot): Promise<void> {
    return initialisePersistentRoot(this.ctx.blockDevices!.rootIo, this.ctx.logger, root, this.rootImage(), { containerId: this.id, sandboxId: this.sandbox.id });
  }

  /**
   * The VM's export directory (a warm VM's exists since the pool made it) with each mount bound
   * into it; a warm QEMU sees them through mount propagation (volumes/exports.ts).
   */
  private async bindVolumes(): Promise<void> {
    const { ctx, id } = this;
    if (!ctx.volumes) return;
    this.undos.push(() => ctx.volumes!.release(id));
    this.shares = await ctx.volumes.prepare(id);
    await ctx.volumes.bind(id, this.volumes.entries);
  }

  /**
   * A warm VM that does not fit goes now; one that does is discarded again on rollback. Either
   * way its directory and its export directory (the pool made both, under this container's id)
   * are this container's now and go on rollback too, after its QEMU.
   */
  private async settleWarmVm(): Promise<void> {
    const { warm, ctx } = this;
    if (!warm) return;
    this.undos.push(async () => {
      await ctx.volumes?.release(this.id);
      await rm(this.dir, { recursive: true, force: true });
    });
    if (!this.useWarm) await ctx.pool!.discard(warm);
    else this.undos.push(() => ctx.pool!.discard(warm));
  }

  /**
   * The overlay, the seed, the warm VM's plugging, the sandbox's VM side and the console pump, side
   * by side. All settle before anything is rolled back, so no undo races a tool still writing.
   */
  private async buildPieces(
    vmNetwork: Promise<VmNetwork>,
    planned: Promise<{ network: VmNetwork; tapsReady: boolean }>,
  ): Promise<{ network: VmNetwork; plugged: boolean }> {
    const { ctx, record, id, dir } = this;
    // A paused warm VM writes nothing yet: its console pump can start now, beside the rest.
    if (this.useWarm) this.undos.push(() => ctx.consoles.stop(id));
    const pumping = this.useWarm ? ctx.consoles.start(record) : Promise.resolve();
    const overlay = this.persistentRoot ? this.writePersistentRoot(this.persistentRoot) : this.writeOverlay();
    const seeded = planned.then(({ network }) => this.writeSeed(network).then(() => network));
    // A warm VM gets each piece as soon as it exists: root disk, NICs, then the seed.
    // NICs as soon as their TAPs exist: at the plan when they were made in advance, else once wired.
    const plugged = this.useWarm
      ? plugWarm(ctx, this.warm!, {
          cputune: cputuneFor(this.spec.resources),
          diskDriver: this.annotations.diskDriver,
          overlayPath: overlay.then(() => join(dir, OVERLAY)),
          network: planned.then((plan) => (plan.tapsReady ? plan.network : vmNetwork)),
          seedPath: seeded.then(() => join(dir, SEED)),
          dataDisks: this.dataDisks(),
        })
      : Promise.resolve(true);
    const [overlayDone, seedDone, pluggedDone, readyDone, pumpDone] = await Promise.allSettled([overlay, seeded, plugged, vmNetwork, pumping]);
    if (overlayDone.status === 'rejected') throw overlayDone.reason;
    if (pumpDone.status === 'rejected') throw pumpDone.reason;
    if (readyDone.status === 'rejected') throw readyDone.reason;
    if (seedDone.status === 'rejected') throw seedDone.reason;
    if (pluggedDone.status === 'rejected') throw pluggedDone.reason;
    return { network: seedDone.value, plugged: pluggedDone.value };
  }

  private writeOverlay(): Promise<void> {
    const { image, annotations } = this;
    return createOverlay({
      backingPath: this.ctx.images.blobPath(image.id),
      backingFormat: image.format,
      backingVirtualSize: image.virtualSize,
      overlayPath: join(this.dir, OVERLAY),
      ...(annotations.rootVolumeSizeBytes !== undefined ? { sizeBytes: annotations.rootVolumeSizeBytes } : {}),
    }).then(() => giveOverlay(join(this.dir, OVERLAY), this.ctx.host.qemuUser));
  }

  private writeSeed(network: VmNetwork): Promise<void> {
    const { sandbox, annotations } = this;
    const seed = buildSeedDocuments(
      {
        instanceId: this.id,
        hostname: sandbox.hostname || sandbox.metadata.name,
        annotations,
        env: this.spec.envs.map((e) => ({ name: e.key, value: e.value })),
        network,
        bootcmd: [...blockLinkBootcmd(this.blocks.dataDisks), ...this.volumes.bootcmd],
        blockDevices: this.blocks.dataDisks.map((d) => ({ containerPath: d.containerPath, serial: d.serial, readOnly: d.readOnly })),
      },
      annotations.cloudInitImageType,
    );
    // Written behind like the records: it lives and dies with the VM's directory.
    const path = join(this.dir, SEED);
    return writeSeedIso(path, seed, this.ctx.syncBehind).then(() => giveSeed(path, this.ctx.host.qemuUser));
  }

  /** The pod's interfaces do not fit a warm VM (SR-IOV, too many): a cold VM after all. */
  private async fallBackToCold(): Promise<void> {
    const { ctx, record } = this;
    this.useWarm = false;
    await ctx.pool!.discard(this.warm!);
    await ctx.consoles.stop(this.id); // a cold VM's pump starts with the VM
    record.domainName = this.coldDomainName;
    record.domainUuid = this.annotations.systemUuid ?? ctx.newUuid();
  }

  private async keepWarmVm(): Promise<void> {
    const { record, warm } = this;
    record.warm = true;
    record.vm = { memoryBytes: warm!.memoryBytes, vcpus: warm!.vcpus, domainType: warm!.domainType };
    await this.commit();
  }

  private async defineColdVm(network: VmNetwork): Promise<void> {
    const { ctx } = this;
    const dom = await defineColdDomain(ctx, this.record, {
      sandbox: this.sandbox,
      annotations: this.annotations,
      vcpuAnnotationGiven: this.vcpuAnnotationGiven,
      network,
      shares: this.shares,
      dataDisks: this.dataDisks(),
    });
    this.undos.push(() => undefineFully(domainOps(ctx), dom));
    await this.commit();
  }

  /** The domain becomes known to the events, then the record is written. */
  private async commit(): Promise<void> {
    const { ctx, record } = this;
    ctx.byDomain.set(record.domainName, this.id);
    this.undos.push(async () => void ctx.byDomain.delete(record.domainName));
    faultPoint('container.create.after-domain');
    await ctx.store.put(record);
  }

  private async rollBack(): Promise<void> {
    for (const undo of this.undos.reverse()) {
      await undo().catch((e: unknown) => this.ctx.logger.error({ err: e, containerId: this.id }, 'rollback step of CreateContainer failed'));
    }
  }
}
