/**
 * A libvirtd in memory for the orchestrators' unit tests: the DomainOps calls (src/libvirt/domain_ops.ts)
 * with domains that are defined, run, pause, shut off and vanish as libvirt's would, lifecycle
 * events on stop, errors shaped like libvirt's (NO_DOMAIN, "not running"), and a line in a
 * CallLog for every call. Time-taking calls (destroy, a guest's ACPI power-off) take virtual time
 * from the given clock.
 */
import { LibvirtError } from '../../src/libvirt/rpc/errors.js';
import {
  DomainCreateFlags,
  DomainEvent,
  DomainEventStoppedDetail,
  DomainState,
  VIR_ERR_NO_DOMAIN,
  type DomainRef,
  type DomainStateInfo,
  type LifecycleEvent,
  type LifecycleHandler,
  type TypedParam,
} from '../../src/libvirt/client.js';
import type { DomainConnection, DomainOps } from '../../src/libvirt/domain_ops.js';
import type { QemuProcess, QemuProcesses } from '../../src/libvirt/qemu_process.js';
import type { Clock } from '../../src/clock.js';
import type { CallLog } from './call_log.js';

const VIR_ERR_OPERATION_INVALID = 55;

interface FakeDomain {
  ref: DomainRef;
  xml: string;
  state: number;
}

const STATE_NAMES = Object.fromEntries(Object.entries(DomainState).map(([k, v]) => [v, k]));
const EVENT_NAMES = Object.fromEntries(Object.entries(DomainEvent).map(([k, v]) => [v, k]));
const STOPPED_NAMES = Object.fromEntries(Object.entries(DomainEventStoppedDetail).map(([k, v]) => [v, k]));

function libvirtError(code: number, message: string): LibvirtError {
  return new LibvirtError({ code, domain: 10, message, level: 2, dom: null, str1: null, str2: null, str3: null, int1: 0, int2: 0 }, 0);
}

export interface FakeGuest {
  /** 'obeys': shuts off `acpiMs` after an ACPI power-button press; 'ignores': keeps running (a busybox rescue image). */
  acpi: 'obeys' | 'ignores';
  acpiMs: number;
}

export class FakeDomainOps implements DomainOps {
  readonly domains = new Map<string, FakeDomain>();
  guest: FakeGuest = { acpi: 'obeys', acpiMs: 0 };
  /** libvirt's destroy of a TCG VM takes ~1.8 s here: most of it waiting for PID 1 to reap QEMU. */
  destroyMs = 1800;
  /** QEMU's exit after libvirt's SIGTERM (what FakeQemuProcesses sees). */
  qemuExitMs = 15;
  /** Set: destroys end when it resolves instead of after destroyMs (libvirt still waiting for the reap). */
  destroyGate: Promise<void> | undefined;
  /** Domain ids (one per start) whose QEMU has exited. */
  readonly qemuGone = new Set<number>();
  private readonly failures = new Map<string, Error>();
  private nextId = 1;

  constructor(
    private readonly log: CallLog,
    private readonly clock: Clock,
    private readonly emit: (ev: LifecycleEvent) => void,
  ) {}

  /** The next call of `method` fails with `err` (once). */
  failNext(method: keyof DomainOps, err: Error): void {
    this.failures.set(method, err);
  }

  /** A domain that exists before the test (a leftover, another vmlet's). */
  addDomain(xml: string, state: number): DomainRef {
    const ref = this.refFromXml(xml);
    this.domains.set(ref.name, { ref, xml, state });
    return ref;
  }

  async listAllDomains(): Promise<DomainRef[]> {
    this.call('listAllDomains', '');
    return [...this.domains.values()].map((d) => d.ref);
  }

  async lookupByName(name: string): Promise<DomainRef> {
    this.call('lookupByName', name);
    return this.mustGet(name).ref;
  }

  async defineXml(xml: string): Promise<DomainRef> {
    const ref = this.refFromXml(xml);
    this.call('defineXml', `${ref.name} uuid=${ref.uuid}`);
    const existing = this.domains.get(ref.name);
    this.domains.set(ref.name, { ref, xml, state: existing?.state ?? DomainState.SHUTOFF });
    return ref;
  }

  async undefine(dom: DomainRef, flags = 0): Promise<void> {
    this.call('undefine', `${dom.name} flags=${flags}`);
    this.mustGet(dom.name);
    this.domains.delete(dom.name);
  }

  async create(dom: DomainRef, flags = 0): Promise<DomainRef> {
    this.call('create', `${dom.name}${flags & DomainCreateFlags.START_PAUSED ? ' START_PAUSED' : ''}`);
    const d = this.mustGet(dom.name);
    if (d.state !== DomainState.SHUTOFF) throw libvirtError(VIR_ERR_OPERATION_INVALID, 'Requested operation is not valid: domain is already running');
    d.state = flags & DomainCreateFlags.START_PAUSED ? DomainState.PAUSED : DomainState.RUNNING;
    d.ref = { ...d.ref, id: this.nextId++ };
    return d.ref;
  }

  async resume(dom: DomainRef): Promise<void> {
    this.call('resume', dom.name);
    const d = this.mustGet(dom.name);
    if (d.state !== DomainState.PAUSED) throw libvirtError(VIR_ERR_OPERATION_INVALID, 'Requested operation is not valid: domain is not paused');
    d.state = DomainState.RUNNING;
  }

  async shutdown(dom: DomainRef, flags = 0): Promise<void> {
    this.call('shutdown', `${dom.name} flags=${flags}`);
    const d = this.mustRun(dom.name);
    if (this.guest.acpi === 'ignores') return;
    void this.clock.sleep(this.guest.acpiMs).done.then(() => {
      if (this.domains.get(dom.name) !== d || d.state === DomainState.SHUTOFF) return;
      this.stopped(d, DomainEventStoppedDetail.SHUTDOWN);
    });
  }

  async destroy(dom: DomainRef): Promise<void> {
    this.call('destroy', dom.name);
    const d = this.mustRun(dom.name);
    const qemu = d.ref.id;
    void this.clock.sleep(Math.min(this.qemuExitMs, this.destroyMs)).done.then(() => this.qemuGone.add(qemu));
    await (this.destroyGate ?? this.clock.sleep(this.destroyMs).done);
    this.stopped(d, DomainEventStoppedDetail.DESTROYED);
  }

  async getState(dom: DomainRef): Promise<DomainStateInfo> {
    const d = this.mustGet(dom.name);
    this.call('getState', `${dom.name} -> ${STATE_NAMES[d.state]}`);
    return { state: d.state, reason: 0 };
  }

  async getXmlDesc(dom: DomainRef): Promise<string> {
    this.call('getXmlDesc', dom.name);
    return this.mustGet(dom.name).xml;
  }

  async setMemoryFlags(dom: DomainRef, memoryKiB: bigint, flags = 0): Promise<void> {
    this.call('setMemoryFlags', `${dom.name} ${memoryKiB} KiB flags=${flags}`);
    this.mustGet(dom.name);
  }

  async setSchedulerParametersFlags(dom: DomainRef, params: TypedParam[], flags = 0): Promise<void> {
    this.call('setSchedulerParametersFlags', `${dom.name} ${params.map((p) => `${p.field}=${String(p.value)}`).join(',')} flags=${flags}`);
    this.mustGet(dom.name);
  }

  async attachDeviceFlags(dom: DomainRef, xml: string, flags = 0): Promise<void> {
    const source = /<source (?:dev|file)="([^"]*)"/.exec(xml)?.[1] ?? '?';
    const bus = /<address [^>]*bus="([^"]*)"/.exec(xml)?.[1] ?? '?';
    this.call('attachDeviceFlags', `${dom.name} disk ${source} bus=${bus} flags=${flags}`);
    this.mustGet(dom.name);
  }

  private call(method: keyof DomainOps, args: string): void {
    this.log.add(`libvirt ${method}${args ? ` ${args}` : ''}`);
    const err = this.failures.get(method);
    if (err) {
      this.failures.delete(method);
      throw err;
    }
  }

  private stopped(d: FakeDomain, detail: number): void {
    this.qemuGone.add(d.ref.id);
    d.state = DomainState.SHUTOFF;
    d.ref = { ...d.ref, id: -1 };
    this.log.add(`event ${EVENT_NAMES[DomainEvent.STOPPED]}/${STOPPED_NAMES[detail]} ${d.ref.name}`);
    this.emit({ domain: d.ref, event: DomainEvent.STOPPED, detail });
  }

  private mustGet(name: string): FakeDomain {
    const d = this.domains.get(name);
    if (!d) throw libvirtError(VIR_ERR_NO_DOMAIN, `Domain not found: no domain with matching name '${name}'`);
    return d;
  }

  private mustRun(name: string): FakeDomain {
    const d = this.mustGet(name);
    if (d.state === DomainState.SHUTOFF) throw libvirtError(VIR_ERR_OPERATION_INVALID, 'Requested operation is not valid: domain is not running');
    return d;
  }

  private refFromXml(xml: string): DomainRef {
    const name = /<name>([^<]+)<\/name>/.exec(xml)?.[1];
    const uuid = /<uuid>([^<]+)<\/uuid>/.exec(xml)?.[1];
    if (!name || !uuid) throw new Error('fake libvirtd: domain XML without name or uuid');
    return { name, uuid, id: -1 };
  }
}

/** LibvirtConnection's part: one connected FakeDomainOps and its lifecycle handlers. */
export class FakeDomainConnection implements DomainConnection {
  readonly ops: FakeDomainOps;
  private readonly handlers = new Set<LifecycleHandler>();
  private readonly connected = new Set<() => void>();

  constructor(log: CallLog, clock: Clock) {
    this.ops = new FakeDomainOps(log, clock, (ev) => {
      for (const h of this.handlers) h(ev);
    });
  }

  current(): FakeDomainOps {
    return this.ops;
  }

  onLifecycle(handler: LifecycleHandler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  onConnected(listener: () => void): () => void {
    this.connected.add(listener);
    return () => this.connected.delete(listener);
  }
}

/** The QEMU processes of FakeDomainOps' domains: one per start, gone `qemuExitMs` into a destroy. */
export class FakeQemuProcesses implements QemuProcesses {
  constructor(
    private readonly ops: FakeDomainOps,
    private readonly clock: Clock,
    private readonly log: CallLog,
  ) {}

  async find(domainName: string): Promise<QemuProcess | undefined> {
    const d = this.ops.domains.get(domainName);
    if (!d || d.state === DomainState.SHUTOFF || this.ops.qemuGone.has(d.ref.id)) return undefined;
    return { pid: 1000 + d.ref.id, startTime: String(d.ref.id) };
  }

  async waitForExit(proc: QemuProcess, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const end = this.clock.monotonicMs() + timeoutMs;
    for (;;) {
      if (this.ops.qemuGone.has(Number(proc.startTime))) {
        this.log.add(`qemu ${proc.pid} exited`);
        return true;
      }
      if (signal?.aborted || this.clock.monotonicMs() >= end) return false;
      await this.clock.sleep(5).done;
    }
  }
}
