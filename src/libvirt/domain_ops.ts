/**
 * The libvirt calls vmlet's orchestrators make (ContainerService, WarmPool, stats, resource
 * updates), as narrow interfaces that LibvirtClient and LibvirtConnection satisfy, so the
 * orchestrators are tested against a recording fake (test/helpers/fake_domain_ops.ts). Also the
 * tolerant forms of destroy/undefine/lookup both orchestrators need.
 */
import { errorText } from '../errors.js';
import type { DomainRef, DomainStateInfo, DomainInfo, MemoryStats, LifecycleHandler, TypedParam } from './client.js';
import { isNoDomain, DomainState, DomainUndefineFlags } from './client.js';

/** One connection's domain calls. */
export interface DomainOps {
  listAllDomains(flags?: number): Promise<DomainRef[]>;
  lookupByName(name: string): Promise<DomainRef>;
  defineXml(xml: string, flags?: number): Promise<DomainRef>;
  undefine(dom: DomainRef, flags?: number): Promise<void>;
  create(dom: DomainRef, flags?: number): Promise<DomainRef>;
  resume(dom: DomainRef): Promise<void>;
  shutdown(dom: DomainRef, flags?: number): Promise<void>;
  destroy(dom: DomainRef, flags?: number): Promise<void>;
  getState(dom: DomainRef): Promise<DomainStateInfo>;
  getXmlDesc(dom: DomainRef, flags?: number): Promise<string>;
  setMemoryFlags(dom: DomainRef, memoryKiB: bigint, flags?: number): Promise<void>;
  setSchedulerParametersFlags(dom: DomainRef, params: TypedParam[], flags?: number): Promise<void>;
  attachDeviceFlags(dom: DomainRef, xml: string, flags?: number): Promise<void>;
}

/** What ContainerStats reads of a domain. */
export interface DomainMetricsOps {
  getInfo(dom: DomainRef): Promise<DomainInfo>;
  memoryStats(dom: DomainRef, flags?: number): Promise<MemoryStats>;
}

/** The long-lived connection (LibvirtConnection): the current client, and events across reconnects. */
export interface DomainConnection<Ops = DomainOps> {
  /** The connected client; throws UNAVAILABLE while there is none. */
  current(): Ops;
  /** Lifecycle events of all domains; returns the function that removes the handler. */
  onLifecycle(handler: LifecycleHandler): () => void;
  /** Called after every (re)connect: events are not replayed, so the moment to resynchronise. */
  onConnected(listener: () => void): () => void;
}

/** The domain, or undefined when libvirt has none of that name. */
export async function lookupOrUndefined(ops: DomainOps, name: string): Promise<DomainRef | undefined> {
  try {
    return await ops.lookupByName(name);
  } catch (err) {
    if (isNoDomain(err)) return undefined;
    throw err;
  }
}

/** Running, paused, …: anything but shut off (a vanished domain is not active). */
export async function isActive(ops: DomainOps, dom: DomainRef): Promise<boolean> {
  try {
    const s = await ops.getState(dom);
    return s.state !== DomainState.SHUTOFF && s.state !== DomainState.NOSTATE;
  } catch (err) {
    if (isNoDomain(err)) return false;
    throw err;
  }
}

/** Whether an error of destroy means the domain is already stopped or gone (what destroy wanted). */
function alreadyStopped(err: unknown): boolean {
  return isNoDomain(err) || /not running/i.test(errorText(err));
}

/** Destroys the domain; one already stopped or gone is fine. */
export async function destroyQuietly(ops: DomainOps, dom: DomainRef): Promise<void> {
  try {
    await ops.destroy(dom);
  } catch (err) {
    if (!alreadyStopped(err)) throw err;
  }
}

/** Destroys the domain if it is active (asks first: destroying a stopped domain is an error). */
export async function destroyIfActive(ops: DomainOps, dom: DomainRef): Promise<void> {
  try {
    if (await isActive(ops, dom)) await ops.destroy(dom);
  } catch (err) {
    // Already stopped between the check and the call: that is what we wanted.
    if (!alreadyStopped(err)) throw err;
  }
}

/** Undefines the domain with its managed save, snapshot metadata and NVRAM; a gone domain is fine. */
export async function undefineFully(ops: DomainOps, dom: DomainRef): Promise<void> {
  try {
    await ops.undefine(dom, DomainUndefineFlags.MANAGED_SAVE | DomainUndefineFlags.SNAPSHOTS_METADATA | DomainUndefineFlags.NVRAM);
  } catch (err) {
    if (!isNoDomain(err)) throw err;
  }
}
