/**
 * vmlet's access to libvirt: a client of libvirtd's own RPC protocol (XDR over the unix socket
 * /run/libvirt/libvirt-sock, program 0x20008086), written here rather than bound from libvirt.so.
 *
 * Why not @unraid/libvirt (the only Node binding that builds on Node 20):
 * - Events: it has no domain events, so vmlet could learn that a VM stopped only by polling. Here
 *   a lifecycle callback is one registration and libvirtd pushes every start/stop/crash.
 * - Error codes: every error it raises has code -1, so "no such domain" could only be told apart
 *   by matching message text (which libvirt translates and rewords). The wire carries the real
 *   virErrorNumber, domain and level; LibvirtError keeps them.
 * - Non-blocking: its calls occupy libuv thread-pool threads (destroy holds one for ~1.4 s), the
 *   same four threads fs and dns use, so a few slow libvirt calls stall unrelated I/O. Here a
 *   call is a packet on a socket: any number run concurrently on one connection, matched by
 *   serial, each with its own time limit, and the event loop never waits.
 * - It also lacks getState, flags on undefine/shutdown/destroy, typed parameters, and needs a
 *   native build against libvirt-dev. The subset vmlet needs is small, and libvirt keeps its
 *   procedure numbers and structs stable (append-only), as its own remote driver relies on.
 */
import { QmpError } from '../qmp/errors.js';
import { performance } from 'node:perf_hooks';
import { InvalidArgumentError, errorText } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { MEMORY_STAT_NR, MemoryStatTag, VIR_DOMAIN_EVENT_ID_LIFECYCLE } from './rpc/constants.js';
import { LibvirtConnectionError } from './rpc/errors.js';
import {
  AuthType,
  Proc,
  QEMU_PROGRAM,
  QEMU_PROTOCOL_VERSION,
  QemuProc,
  readDomain,
  readOptionalString,
  readTypedParam,
  REMOTE_AUTH_TYPE_LIST_MAX,
  REMOTE_DOMAIN_LIST_MAX,
  REMOTE_DOMAIN_MEMORY_STATS_MAX,
  REMOTE_DOMAIN_SCHEDULER_PARAMETERS_MAX,
  REMOTE_PROGRAM,
  REMOTE_PROTOCOL_VERSION,
  REMOTE_STRING_MAX,
  isUuid,
  uuidToBytes,
  VIR_UUID_BUFLEN,
  writeDomain,
  writeOptionalString,
  writeTypedParam,
  type DomainRef,
  type TypedParam,
} from './rpc/remote_protocol.js';
import { RpcTransport, type CloseListener } from './rpc/transport.js';
import { XdrError, XdrReader, XdrWriter } from './rpc/xdr.js';

export * from './rpc/constants.js';
export {
  LibvirtError,
  LibvirtConnectionError,
  LibvirtTimeoutError,
  isLibvirtError,
  isNoDomain,
  isOperationInvalid,
  grpcCodeForLibvirtError,
} from './rpc/errors.js';
export type { DomainRef, TypedParam } from './rpc/remote_protocol.js';

export const DEFAULT_SOCKET_PATH = '/run/libvirt/libvirt-sock';
export const DEFAULT_URI = 'qemu:///system';

/** virDomainCreateFlags */
export const DomainCreateFlags = { START_PAUSED: 1 } as const;


export interface LibvirtClientOptions {
  socketPath?: string;
  uri?: string;
  /** Time limit of each call unless the method takes its own. A define waits for libvirt's QEMU capability probe: 30-60 s seen here. */
  callTimeoutMs?: number;
  connectTimeoutMs?: number;
  logger?: Logger;
}

export interface DomainStateInfo {
  /** virDomainState (DomainState.*) */
  state: number;
  /** Reason code for that state, e.g. DomainShutoffReason.* when SHUTOFF. */
  reason: number;
}

export interface DomainInfo {
  state: number;
  maxMemKiB: bigint;
  memoryKiB: bigint;
  nrVirtCpu: number;
  cpuTimeNs: bigint;
}

export interface BlockInfo {
  capacity: bigint;
  allocation: bigint;
  physical: bigint;
}

/** Memory statistics by name; a field is absent when the hypervisor did not report it. KiB except the counters and lastUpdate (s). */
export interface MemoryStats {
  swapIn?: bigint;
  swapOut?: bigint;
  majorFault?: bigint;
  minorFault?: bigint;
  unused?: bigint;
  available?: bigint;
  actualBalloon?: bigint;
  rss?: bigint;
  usable?: bigint;
  lastUpdate?: bigint;
  diskCaches?: bigint;
  hugetlbPgalloc?: bigint;
  hugetlbPgfail?: bigint;
}

const MEMORY_STAT_NAMES: Record<number, keyof MemoryStats> = {
  [MemoryStatTag.SWAP_IN]: 'swapIn',
  [MemoryStatTag.SWAP_OUT]: 'swapOut',
  [MemoryStatTag.MAJOR_FAULT]: 'majorFault',
  [MemoryStatTag.MINOR_FAULT]: 'minorFault',
  [MemoryStatTag.UNUSED]: 'unused',
  [MemoryStatTag.AVAILABLE]: 'available',
  [MemoryStatTag.ACTUAL_BALLOON]: 'actualBalloon',
  [MemoryStatTag.RSS]: 'rss',
  [MemoryStatTag.USABLE]: 'usable',
  [MemoryStatTag.LAST_UPDATE]: 'lastUpdate',
  [MemoryStatTag.DISK_CACHES]: 'diskCaches',
  [MemoryStatTag.HUGETLB_PGALLOC]: 'hugetlbPgalloc',
  [MemoryStatTag.HUGETLB_PGFAIL]: 'hugetlbPgfail',
};

export interface DomainCapabilitiesQuery {
  emulatorBin?: string;
  arch?: string;
  machine?: string;
  virtType?: string;
}

export interface LifecycleEvent {
  domain: DomainRef;
  /** virDomainEventType (DomainEvent.*) */
  event: number;
  /** Detail code whose meaning depends on `event` (DomainEventStoppedDetail.* etc.). */
  detail: number;
}
export type LifecycleHandler = (ev: LifecycleEvent) => void;

type Encode = (w: XdrWriter) => void;
type Decode<T> = (r: XdrReader) => T;
const nothing: Decode<void> = () => undefined;

/** Refuses names libvirt could only reject later, with a clear InvalidArgumentError now. */
function checkText(what: string, value: string): void {
  if (typeof value !== 'string' || value.length === 0 || value.includes('\0')) {
    throw new InvalidArgumentError(`${what} must be a non-empty string without NUL bytes`);
  }
  if (Buffer.byteLength(value) > REMOTE_STRING_MAX) throw new InvalidArgumentError(`${what} is longer than libvirt accepts`);
}

function checkFlags(flags: number): void {
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xffff_ffff) throw new InvalidArgumentError(`invalid libvirt flags: ${flags}`);
}

function checkDomain(dom: DomainRef): void {
  if (!dom || typeof dom !== 'object' || !isUuid(dom.uuid) || !Number.isInteger(dom.id)) {
    throw new InvalidArgumentError('domain reference must come from a lookup (name, uuid, id)');
  }
  checkText('domain name', dom.name);
}

export class LibvirtClient {
  private readonly lifecycleHandlers = new Set<LifecycleHandler>();
  private lifecycleRegistration: Promise<number> | undefined;

  private constructor(
    private readonly transport: RpcTransport,
    private readonly callTimeoutMs: number,
    private readonly log: Logger,
  ) {
    transport.onMessage((header, payload) => {
      if (header.program === REMOTE_PROGRAM && header.procedure === Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE) {
        this.onLifecycleMessage(payload);
      }
    });
  }

  /** Opens a connection: socket, auth-list (none, or polkit for root), connect-open of `uri`. */
  static async connect(options: LibvirtClientOptions = {}): Promise<LibvirtClient> {
    const socketPath = options.socketPath ?? DEFAULT_SOCKET_PATH;
    const uri = options.uri ?? DEFAULT_URI;
    const log = options.logger ?? silentLogger;
    const transport = await RpcTransport.connect({ socketPath, connectTimeoutMs: options.connectTimeoutMs ?? 5_000, logger: log });
    const client = new LibvirtClient(transport, options.callTimeoutMs ?? 120_000, log);
    try {
      await client.authenticate();
      await client.call(
        Proc.CONNECT_OPEN,
        (w) => {
          writeOptionalString(w, uri);
          w.uint(0);
        },
        nothing,
      );
    } catch (err) {
      transport.close('handshake with libvirtd failed');
      if (err instanceof LibvirtConnectionError) throw err;
      throw new LibvirtConnectionError(`opening ${uri} on ${socketPath} failed: ${errorText(err)}`, { cause: err });
    }
    log.debug({ socketPath, uri }, 'connected to libvirtd');
    return client;
  }

  private async authenticate(): Promise<void> {
    const types = await this.call(Proc.AUTH_LIST, null, (r) => r.array(REMOTE_AUTH_TYPE_LIST_MAX, (x) => x.int()));
    if (types.length === 0 || types.includes(AuthType.NONE)) return;
    if (types.includes(AuthType.POLKIT)) {
      // For root over the unix socket libvirtd grants polkit auth without asking polkitd.
      const complete = await this.call(Proc.AUTH_POLKIT, null, (r) => r.int());
      if (complete !== 1) throw new LibvirtConnectionError('libvirtd did not complete polkit authentication');
      return;
    }
    throw new LibvirtConnectionError(`libvirtd requires an authentication vmlet does not speak (types ${types.join(',')})`);
  }

  get isClosed(): boolean {
    return this.transport.isClosed;
  }

  /** Called once when the connection ends (libvirtd went away, protocol error, or close()). */
  onClose(listener: CloseListener): () => void {
    return this.transport.onClose(listener);
  }

  /** Says goodbye to libvirtd (connect-close) and closes the socket. Never throws. */
  async close(): Promise<void> {
    if (this.transport.isClosed) return;
    try {
      await this.call(Proc.CONNECT_CLOSE, null, nothing, 2_000);
    } catch (err) {
      this.log.debug({ err: errorText(err) }, 'connect-close failed; closing anyway');
    }
    this.transport.close();
  }

  /** A cheap round trip (connect-get-lib-version) that proves libvirtd answers. */
  async ping(timeoutMs = this.callTimeoutMs): Promise<void> {
    await this.call(Proc.CONNECT_GET_LIB_VERSION, null, (r) => r.uhyper(), timeoutMs);
  }

  /** libvirt's version as major * 1,000,000 + minor * 1,000 + release. */
  async getLibVersion(): Promise<bigint> {
    return this.call(Proc.CONNECT_GET_LIB_VERSION, null, (r) => r.uhyper());
  }

  async getHostname(): Promise<string> {
    return this.call(Proc.CONNECT_GET_HOSTNAME, null, (r) => r.string(REMOTE_STRING_MAX));
  }

  /** The host capabilities XML. */
  async getCapabilities(): Promise<string> {
    return this.call(Proc.CONNECT_GET_CAPABILITIES, null, (r) => r.string(REMOTE_STRING_MAX));
  }

  /** The domain capabilities XML for one emulator/arch/machine/virt type (each optional). */
  async getDomainCapabilities(query: DomainCapabilitiesQuery = {}, flags = 0): Promise<string> {
    checkFlags(flags);
    return this.call(
      Proc.CONNECT_GET_DOMAIN_CAPABILITIES,
      (w) => {
        writeOptionalString(w, query.emulatorBin);
        writeOptionalString(w, query.arch);
        writeOptionalString(w, query.machine);
        writeOptionalString(w, query.virtType);
        w.uint(flags);
      },
      (r) => r.string(REMOTE_STRING_MAX),
    );
  }

  /** Every domain (or those matching ListDomainsFlags), running or defined. */
  async listAllDomains(flags = 0): Promise<DomainRef[]> {
    checkFlags(flags);
    return this.call(
      Proc.CONNECT_LIST_ALL_DOMAINS,
      (w) => w.int(1).uint(flags),
      (r) => {
        const domains = r.array(REMOTE_DOMAIN_LIST_MAX, readDomain);
        r.uint(); // count, equal to domains.length
        return domains;
      },
    );
  }

  /** Rejects with LibvirtError VIR_ERR_NO_DOMAIN (see isNoDomain) when there is none. */
  async lookupByName(name: string): Promise<DomainRef> {
    checkText('domain name', name);
    return this.call(Proc.DOMAIN_LOOKUP_BY_NAME, (w) => w.string(name, REMOTE_STRING_MAX), readDomain);
  }

  async lookupByUuid(uuid: string): Promise<DomainRef> {
    if (!isUuid(uuid)) throw new InvalidArgumentError(`not a UUID: ${JSON.stringify(uuid)}`);
    return this.call(Proc.DOMAIN_LOOKUP_BY_UUID, (w) => w.opaqueFixed(uuidToBytes(uuid), VIR_UUID_BUFLEN), readDomain);
  }

  /** Defines (or redefines) a persistent domain from XML. */
  async defineXml(xml: string, flags = 0): Promise<DomainRef> {
    checkText('domain XML', xml);
    checkFlags(flags);
    return this.call(Proc.DOMAIN_DEFINE_XML_FLAGS, (w) => w.string(xml, REMOTE_STRING_MAX).uint(flags), readDomain);
  }

  /** Removes a domain's definition; DomainUndefineFlags choose what goes with it (managed save, nvram, snapshot metadata…). */
  async undefine(dom: DomainRef, flags = 0): Promise<void> {
    return this.domainCall(Proc.DOMAIN_UNDEFINE_FLAGS, dom, flags);
  }

  /** Starts a defined domain; resolves with the domain's reference, now carrying its running id. */
  async create(dom: DomainRef, flags = 0): Promise<DomainRef> {
    checkDomain(dom);
    checkFlags(flags);
    return this.call(
      Proc.DOMAIN_CREATE_WITH_FLAGS,
      (w) => {
        writeDomain(w, dom);
        w.uint(flags);
      },
      readDomain,
    );
  }

  /** Resumes a paused domain (one started with DomainCreateFlags.START_PAUSED). */
  async resume(dom: DomainRef): Promise<void> {
    checkDomain(dom);
    return this.call(Proc.DOMAIN_RESUME, (w) => writeDomain(w, dom), nothing);
  }

  /** Asks the guest to shut down (DomainShutdownFlags.ACPI_POWER_BTN presses the power button); returns at once. */
  async shutdown(dom: DomainRef, flags = 0): Promise<void> {
    return this.domainCall(Proc.DOMAIN_SHUTDOWN_FLAGS, dom, flags);
  }

  /** Stops the domain now (DomainDestroyFlags.GRACEFUL: SIGTERM only, no SIGKILL). */
  async destroy(dom: DomainRef, flags = 0): Promise<void> {
    return this.domainCall(Proc.DOMAIN_DESTROY_FLAGS, dom, flags);
  }

  async getState(dom: DomainRef): Promise<DomainStateInfo> {
    checkDomain(dom);
    return this.call(
      Proc.DOMAIN_GET_STATE,
      (w) => {
        writeDomain(w, dom);
        w.uint(0);
      },
      (r) => ({ state: r.int(), reason: r.int() }),
    );
  }

  async getInfo(dom: DomainRef): Promise<DomainInfo> {
    checkDomain(dom);
    return this.call(
      Proc.DOMAIN_GET_INFO,
      (w) => writeDomain(w, dom),
      (r) => ({
        // unsigned char and unsigned short each take a full XDR word
        state: r.uint(),
        maxMemKiB: r.uhyper(),
        memoryKiB: r.uhyper(),
        nrVirtCpu: r.uint(),
        cpuTimeNs: r.uhyper(),
      }),
    );
  }

  /** The domain XML; DomainXmlFlags.INACTIVE gives the persistent definition instead of the live one. */
  async getXmlDesc(dom: DomainRef, flags = 0): Promise<string> {
    checkDomain(dom);
    checkFlags(flags);
    return this.call(
      Proc.DOMAIN_GET_XML_DESC,
      (w) => {
        writeDomain(w, dom);
        w.uint(flags);
      },
      (r) => r.string(REMOTE_STRING_MAX),
    );
  }

  /** Balloon/memory statistics of a running domain. */
  async memoryStats(dom: DomainRef, flags = 0): Promise<MemoryStats> {
    checkDomain(dom);
    checkFlags(flags);
    return this.call(
      Proc.DOMAIN_MEMORY_STATS,
      (w) => {
        writeDomain(w, dom);
        w.uint(MEMORY_STAT_NR).uint(flags);
      },
      (r) => {
        const stats: MemoryStats = {};
        const entries = r.array(REMOTE_DOMAIN_MEMORY_STATS_MAX, (x) => ({ tag: x.int(), value: x.uhyper() }));
        for (const { tag, value } of entries) {
          const name = MEMORY_STAT_NAMES[tag];
          if (name) stats[name] = value;
        }
        return stats;
      },
    );
  }

  /** Attaches the device `xml` describes (one <disk>, …); DomainAffect selects live and/or config. */
  async attachDeviceFlags(dom: DomainRef, xml: string, flags = 0): Promise<void> {
    checkDomain(dom);
    checkFlags(flags);
    return this.call(
      Proc.DOMAIN_ATTACH_DEVICE_FLAGS,
      (w) => {
        writeDomain(w, dom);
        w.string(xml, REMOTE_STRING_MAX).uint(flags);
      },
      nothing,
    );
  }

  /** Sets current (or with DOMAIN_MEM_MAXIMUM, maximum) memory; DomainAffect selects live and/or config. */
  async setMemoryFlags(dom: DomainRef, memoryKiB: bigint, flags = 0): Promise<void> {
    checkDomain(dom);
    checkFlags(flags);
    if (typeof memoryKiB !== 'bigint' || memoryKiB <= 0n) throw new InvalidArgumentError('memory must be a positive bigint of KiB');
    return this.call(
      Proc.DOMAIN_SET_MEMORY_FLAGS,
      (w) => {
        writeDomain(w, dom);
        w.uhyper(memoryKiB).uint(flags);
      },
      nothing,
    );
  }

  async setVcpusFlags(dom: DomainRef, nvcpus: number, flags = 0): Promise<void> {
    checkDomain(dom);
    checkFlags(flags);
    if (!Number.isInteger(nvcpus) || nvcpus < 1 || nvcpus > 0xffff) throw new InvalidArgumentError(`invalid vCPU count ${nvcpus}`);
    return this.call(
      Proc.DOMAIN_SET_VCPUS_FLAGS,
      (w) => {
        writeDomain(w, dom);
        w.uint(nvcpus).uint(flags);
      },
      nothing,
    );
  }

  /** Sets scheduler tunables, e.g. { field: SchedulerParam.CPU_SHARES, type: 'ullong', value: 1024n }. */
  async setSchedulerParametersFlags(dom: DomainRef, params: TypedParam[], flags = 0): Promise<void> {
    checkDomain(dom);
    checkFlags(flags);
    if (!Array.isArray(params) || params.length === 0 || params.length > REMOTE_DOMAIN_SCHEDULER_PARAMETERS_MAX) {
      throw new InvalidArgumentError(`between 1 and ${REMOTE_DOMAIN_SCHEDULER_PARAMETERS_MAX} scheduler parameters are needed`);
    }
    return this.call(
      Proc.DOMAIN_SET_SCHEDULER_PARAMETERS_FLAGS,
      (w) => {
        writeDomain(w, dom);
        w.array(params, REMOTE_DOMAIN_SCHEDULER_PARAMETERS_MAX, writeTypedParam);
        w.uint(flags);
      },
      nothing,
    );
  }

  /** Reads the scheduler tunables back (asks libvirt how many there are first, as libvirt's client does). */
  async getSchedulerParametersFlags(dom: DomainRef, flags = 0): Promise<TypedParam[]> {
    checkDomain(dom);
    checkFlags(flags);
    const nparams = await this.call(
      Proc.DOMAIN_GET_SCHEDULER_TYPE,
      (w) => writeDomain(w, dom),
      (r) => {
        r.string(REMOTE_STRING_MAX); // scheduler type name, e.g. "posix"
        return r.int();
      },
    );
    if (nparams <= 0) return [];
    return this.call(
      Proc.DOMAIN_GET_SCHEDULER_PARAMETERS_FLAGS,
      (w) => {
        writeDomain(w, dom);
        w.int(Math.min(nparams, REMOTE_DOMAIN_SCHEDULER_PARAMETERS_MAX)).uint(flags);
      },
      (r) => r.array(REMOTE_DOMAIN_SCHEDULER_PARAMETERS_MAX, readTypedParam),
    );
  }

  /** Sizes of one disk of the domain, by target name (vda) or source path. */
  async blockInfo(dom: DomainRef, path: string, flags = 0): Promise<BlockInfo> {
    checkDomain(dom);
    checkText('disk path', path);
    checkFlags(flags);
    return this.call(
      Proc.DOMAIN_GET_BLOCK_INFO,
      (w) => {
        writeDomain(w, dom);
        w.string(path, REMOTE_STRING_MAX).uint(flags);
      },
      (r) => ({ allocation: r.uhyper(), capacity: r.uhyper(), physical: r.uhyper() }),
    );
  }

  /**
   * Calls `handler` for every lifecycle event of every domain (defined, started, stopped, …).
   * Resolves once libvirtd has the registration, so no event after that is missed; the returned
   * function removes the handler. One registration per connection serves all handlers; after a
   * reconnect a new client must register again (LibvirtConnection does that).
   */
  async onLifecycle(handler: LifecycleHandler): Promise<() => void> {
    this.lifecycleHandlers.add(handler);
    const unsubscribe = (): void => {
      this.lifecycleHandlers.delete(handler);
    };
    if (!this.lifecycleRegistration) {
      this.lifecycleRegistration = this.call(
        Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY,
        (w) => w.int(VIR_DOMAIN_EVENT_ID_LIFECYCLE).optional(null, writeDomain),
        (r) => r.int(),
      );
      this.lifecycleRegistration.catch(() => {
        this.lifecycleRegistration = undefined;
      });
    }
    try {
      await this.lifecycleRegistration;
    } catch (err) {
      unsubscribe();
      throw err;
    }
    return unsubscribe;
  }

  private onLifecycleMessage(payload: Buffer): void {
    let ev: LifecycleEvent;
    try {
      const r = new XdrReader(payload);
      r.int(); // callbackID: this connection registers a single lifecycle callback
      ev = { domain: readDomain(r), event: r.int(), detail: r.int() };
      r.end();
    } catch (err) {
      this.log.error({ err: errorText(err) }, 'undecodable lifecycle event from libvirtd');
      return;
    }
    this.log.debug({ domain: ev.domain.name, event: ev.event, detail: ev.detail }, 'libvirt lifecycle event');
    for (const handler of this.lifecycleHandlers) {
      try {
        handler(ev);
      } catch (err) {
        this.log.error({ err, domain: ev.domain.name }, 'lifecycle handler failed');
      }
    }
  }

  private domainCall(proc: number, dom: DomainRef, flags: number): Promise<void> {
    checkDomain(dom);
    checkFlags(flags);
    return this.call(
      proc,
      (w) => {
        writeDomain(w, dom);
        w.uint(flags);
      },
      nothing,
    );
  }

  /**
   * virDomainQemuAgentCommand: one JSON command to the domain's guest agent through libvirt, which
   * owns the agent channel (it connects to a `org.qemu.guest_agent.0` channel itself as soon as
   * the guest opens it, and QEMU serves one client) and resynchronises with guest-sync first.
   * `timeoutSeconds`: libvirt's wait for the reply (>0; -2 blocks, 0 does not wait). Resolves the
   * agent's reply text; an agent error or an agent that is not connected is a LibvirtError.
   */
  async qemuAgentCommand(dom: DomainRef, command: string, timeoutSeconds: number, flags = 0): Promise<string | undefined> {
    checkDomain(dom);
    checkText('agent command', command);
    checkFlags(flags);
    if (!Number.isInteger(timeoutSeconds) || timeoutSeconds < -2) throw new InvalidArgumentError(`invalid agent timeout: ${timeoutSeconds}`);
    // libvirt first syncs with the agent (up to 5 s), then waits `timeoutSeconds` for the reply.
    const callTimeoutMs = timeoutSeconds > 0 ? (timeoutSeconds + 10) * 1000 : this.callTimeoutMs;
    return this.call(
      QemuProc.DOMAIN_AGENT_COMMAND,
      (w) => {
        writeDomain(w, dom);
        w.string(command, REMOTE_STRING_MAX);
        w.int(timeoutSeconds);
        w.uint(flags);
      },
      (r) => readOptionalString(r) ?? undefined,
      callTimeoutMs,
      QEMU_PROGRAM,
    );
  }

  private async call<T>(proc: number, encode: Encode | null, decode: Decode<T>, timeoutMs = this.callTimeoutMs, program = REMOTE_PROGRAM): Promise<T> {
    const w = new XdrWriter();
    try {
      if (encode) encode(w);
    } catch (err) {
      // Arguments that do not fit the protocol (out-of-range number, oversized string) are the caller's.
      if (err instanceof XdrError) throw new InvalidArgumentError(err.message, { cause: err });
      throw err;
    }
    const started = performance.now();
    const payload = await this.transport.call(program, program === QEMU_PROGRAM ? QEMU_PROTOCOL_VERSION : REMOTE_PROTOCOL_VERSION, proc, w.finish(), timeoutMs);
    const r = new XdrReader(payload);
    const result = decode(r);
    r.end();
    this.log.trace({ proc, ms: +(performance.now() - started).toFixed(2) }, 'libvirt call');
    return result;
  }
}


export { QmpError };
