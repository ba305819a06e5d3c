/**
 * What every container verb (create.ts, start.ts, stop.ts, remove.ts, reconcile.ts,
 * lifecycle_events.ts) shares: the records and their indexes, the per-container locks, and the
 * outside systems, each behind a narrow interface (fakes in test/helpers/). ContainerService
 * (service.ts) makes one and hands it to each verb.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { FailedPreconditionError, NotFoundError } from '../errors.js';
import type { Logger } from '../log.js';
import { systemClock, type Clock } from '../clock.js';
import { RecordStore } from '../store/record_store.js';
import { SyncBehind } from '../store/sync_behind.js';
import { KeyedLock } from '../store/keyed_lock.js';
import { resolveId } from '../store/id_index.js';
import type { DomainRef } from '../libvirt/client.js';
import { lookupOrUndefined, type DomainConnection, type DomainOps } from '../libvirt/domain_ops.js';
import type { QemuProcesses } from '../libvirt/qemu_process.js';
import { connectQmp, type QmpConnector } from '../qmp/socket.js';
import type { ImageStore } from '../image/store.js';
import type { SandboxService } from '../sandbox/service.js';
import type { ConsoleLogs } from './console_pumps.js';
import type { HostFacts } from './domain_spec_builder.js';
import type { WarmPool } from './warm/pool.js';
import type { ContainerRecord } from './records.js';
import { QMP_DIR, VM_DIR } from './layout.js';
import type { VolumeHost } from './volumes/exports.js';
import type { DeviceInspector } from './block_devices/plan.js';
import type { DeviceGrants } from './block_devices/grants.js';
import type { DeviceOpener } from './block_devices/device_fd.js';
import type { RootDeviceIo } from './block_devices/persistent_root.js';
import { ownerIdFor } from '../store/owner.js';

/** The image store calls a container's creation makes. */
export type ImageLookup = Pick<ImageStore, 'status' | 'blobPath'>;

/** The sandbox calls the container verbs make. */
export type SandboxLookup = Pick<SandboxService, 'get' | 'mustGet' | 'resolve' | 'vmNetwork' | 'vmNetworkPlan'>;

/**
 * libvirt's destroy takes ~1.8 s here (QEMU is dead after ~15 ms; libvirt waits for PID 1 to reap
 * it: src/libvirt/qemu_process.ts); StopContainer keeps this much of the caller's timeout for the
 * destroy (see stop.ts), in case QEMU cannot be watched and libvirt's answer is what it waits for.
 */
export const DESTROY_MARGIN_MS = 3000;

/** What ContainerService is given. */
export interface ContainerDeps {
  libvirt: DomainConnection;
  images: ImageLookup;
  sandboxes: SandboxLookup;
  consoles: ConsoleLogs;
  host: HostFacts;
  logger: Logger;
  /** The warm VMs (src/container/warm/pool.ts); absent = every VM is cold. */
  pool?: WarmPool;
  clock?: Clock;
  /** A new container's id (64 hex) and a cold domain's UUID; random unless a test fixes them. */
  newId?: () => string;
  newUuid?: () => string;
  /** Opens a warm VM's own QMP socket. */
  qmp?: QmpConnector;
  /** Time kept for the forced destroy at the end of a stop's grace period. */
  destroyMarginMs?: number;
  /** Watches domains' QEMU processes (vm_exit.ts); absent, stops wait for libvirt's answers. */
  qemuProcesses?: QemuProcesses;
  /** The VMs' volume exports (volumes/exports.ts); absent = no shares, and a mount is refused. */
  volumes?: VolumeHost;
  /** Block devices as VM disks (block_devices/); absent = CRI devices are refused. */
  blockDevices?: BlockDeviceHost;
}

/** How a container's block devices are looked at on the host and given to its QEMU. */
export interface BlockDeviceHost {
  inspector: DeviceInspector;
  grants: DeviceGrants;
  /** Reads and writes a persistent root device (block_devices/persistent_root.ts). */
  rootIo: RootDeviceIo;
  /** Opens a data disk's node for a warm VM's QEMU, which gets the fd (warm/adopt.ts). */
  openDevice: DeviceOpener;
}

export interface ContainerContext {
  readonly store: RecordStore<ContainerRecord>;
  readonly syncBehind: SyncBehind;
  /** sandboxId/name/attempt → container id (ALREADY_EXISTS), taken before a create's first await. */
  readonly byKey: Map<string, string>;
  /** Domain name → container id, for libvirt's events and reconcile. */
  readonly byDomain: Map<string, string>;
  readonly locks: KeyedLock;
  /** Containers being created: their domain and directory exist before their record does. */
  readonly creating: Set<string>;
  readonly dataDir: string;
  readonly qmpDir: string;
  /** ownerIdFor(stateDir): written into every domain's metadata. */
  readonly owner: string;
  readonly libvirt: DomainConnection;
  readonly images: ImageLookup;
  readonly sandboxes: SandboxLookup;
  readonly consoles: ConsoleLogs;
  readonly host: HostFacts;
  readonly logger: Logger;
  readonly pool: WarmPool | undefined;
  readonly clock: Clock;
  readonly newId: () => string;
  readonly newUuid: () => string;
  readonly qmp: QmpConnector;
  readonly destroyMarginMs: number;
  readonly qemuProcesses: QemuProcesses | undefined;
  /** Domain name → libvirt destroy still in flight after its QEMU exited (vm_exit.ts). */
  readonly pendingDestroys: Map<string, Promise<void>>;
  readonly volumes: VolumeHost | undefined;
  readonly blockDevices: BlockDeviceHost | undefined;
}

export function containerContext(stateDir: string, deps: ContainerDeps): ContainerContext {
  const { logger } = deps;
  // Write-behind: a record change resolves once renamed into place and is fsynced right after.
  // Only a machine crash can lose the last ones, and that takes the VMs too: reconcile then
  // marks a record whose domain is gone EXITED and removes a domain no record owns.
  const syncBehind = new SyncBehind((err, path) => logger.error({ err, path }, 'could not make a container record durable'));
  return {
    store: new RecordStore<ContainerRecord>(join(stateDir, 'containers'), logger, syncBehind),
    syncBehind,
    byKey: new Map(),
    byDomain: new Map(),
    locks: new KeyedLock(),
    creating: new Set(),
    dataDir: join(stateDir, VM_DIR),
    qmpDir: join(stateDir, QMP_DIR),
    owner: ownerIdFor(stateDir),
    libvirt: deps.libvirt,
    images: deps.images,
    sandboxes: deps.sandboxes,
    consoles: deps.consoles,
    host: deps.host,
    logger,
    pool: deps.pool,
    clock: deps.clock ?? systemClock,
    newId: deps.newId ?? (() => randomBytes(32).toString('hex')),
    newUuid: deps.newUuid ?? randomUUID,
    qmp: deps.qmp ?? connectQmp,
    destroyMarginMs: deps.destroyMarginMs ?? DESTROY_MARGIN_MS,
    qemuProcesses: deps.qemuProcesses,
    pendingDestroys: new Map(),
    volumes: deps.volumes,
    blockDevices: deps.blockDevices,
  };
}

/** The connected libvirt client's domain calls (UNAVAILABLE while disconnected). */
export function domainOps(ctx: ContainerContext): DomainOps {
  return ctx.libvirt.current();
}

export function resolveContainer(ctx: ContainerContext, idOrPrefix: string): string | undefined {
  return resolveId(idOrPrefix, ctx.store.ids(), 'container');
}

export function mustGetContainer(ctx: ContainerContext, idOrPrefix: string): ContainerRecord {
  const id = resolveContainer(ctx, idOrPrefix);
  const r = id === undefined ? undefined : ctx.store.get(id);
  if (!r) throw new NotFoundError(`container ${idOrPrefix} not found`);
  return r;
}

export function lookupDomain(ctx: ContainerContext, r: ContainerRecord): Promise<DomainRef | undefined> {
  return lookupOrUndefined(domainOps(ctx), r.domainName);
}

export async function mustLookupDomain(ctx: ContainerContext, r: ContainerRecord): Promise<DomainRef> {
  const dom = await lookupDomain(ctx, r);
  if (!dom) throw new FailedPreconditionError(`libvirt domain ${r.domainName} of container ${r.id} is gone`);
  return dom;
}
