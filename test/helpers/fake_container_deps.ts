/**
 * Fakes for what ContainerService talks to besides libvirt: the sandbox service (its records and
 * netd's VM side, with gates a test opens to order a flow), the image store, the console pumps
 * and warm VMs' QMP sockets. Every call is a line in the shared CallLog.
 */
import type { ContainerRecord } from '../../src/container/records.js';
import type { ConsoleLogs } from '../../src/container/console_pumps.js';
import type { ImageLookup, SandboxLookup } from '../../src/container/context.js';
import type { ImageRecord } from '../../src/image/types.js';
import type { VmNetwork } from '../../src/network/types.js';
import type { QmpConnector, QmpSession } from '../../src/qmp/socket.js';
import type { SandboxRecord } from '../../src/sandbox/records.js';
import { FailedPreconditionError, NotFoundError } from '../../src/errors.js';
import type { CallLog } from './call_log.js';

/** A promise a test resolves when it wants the flow to go on. */
export class Gate {
  readonly opened: Promise<void>;
  open!: () => void;
  constructor() {
    this.opened = new Promise((resolve) => (this.open = resolve));
  }
  static openGate(): Gate {
    const g = new Gate();
    g.open();
    return g;
  }
}

export function podNetwork(tap = 'tap0-0000abcd'): VmNetwork {
  return {
    interfaces: [
      {
        name: 'eth0',
        mac: '02:42:c6:12:64:05',
        mtu: 1500,
        ips: [{ family: 4, address: '198.18.100.5', prefixLength: 24, gateway: '198.18.100.1' }],
        routes: [{ destination: '0.0.0.0/0', gateway: '198.18.100.1' }],
        binding: { kind: 'tap', tap, bridge: 'vmlet-br-test' },
      },
    ],
    dns: { nameservers: ['198.18.100.1'], search: ['cluster.local'], options: [] },
  };
}

export function readySandbox(id: string, overrides: Partial<SandboxRecord> = {}): SandboxRecord {
  return {
    id,
    key: `default/pod-a/uid-a/0`,
    metadata: { name: 'pod-a', uid: 'uid-a', namespace: 'default', attempt: 0 },
    state: 'READY',
    createdAtNs: '1700000000000000000',
    hostname: 'pod-a',
    logDirectory: '',
    runtimeHandler: '',
    labels: {},
    annotations: {},
    dns: { servers: [], searches: [], options: [] },
    portMappings: [],
    netnsPath: '/run/netns/vmlet-test-netns',
    podIps: ['198.18.100.5'],
    ...overrides,
  };
}

/** SandboxService as the container verbs see it: records, and netd's plan and wired VM side behind gates. */
export class FakeSandboxes implements SandboxLookup {
  readonly records = new Map<string, SandboxRecord>();
  network: VmNetwork = podNetwork();
  tapsReady = true;
  planGate = Gate.openGate();
  wiredGate = Gate.openGate();
  /** netd could not prepare the VM side: both calls fail with this. */
  vmSideFailure: string | undefined;

  constructor(private readonly log: CallLog) {}

  get(id: string): SandboxRecord | undefined {
    return this.records.get(id);
  }

  mustGet(idOrPrefix: string): SandboxRecord {
    const id = this.resolve(idOrPrefix);
    const r = id === undefined ? undefined : this.records.get(id);
    if (!r) throw new NotFoundError(`pod sandbox ${idOrPrefix} not found`);
    return r;
  }

  resolve(idOrPrefix: string): string | undefined {
    return [...this.records.keys()].find((id) => id.startsWith(idOrPrefix));
  }

  async vmNetworkPlan(id: string): Promise<{ network: VmNetwork; tapsReady: boolean }> {
    this.log.add(`netd vmNetworkPlan ${id.slice(0, 12)}`);
    await this.planGate.opened;
    if (this.vmSideFailure) throw new FailedPreconditionError(this.vmSideFailure);
    return { network: this.network, tapsReady: this.tapsReady };
  }

  async vmNetwork(id: string): Promise<VmNetwork> {
    this.log.add(`netd vmNetwork ${id.slice(0, 12)}`);
    await this.wiredGate.opened;
    if (this.vmSideFailure) throw new FailedPreconditionError(this.vmSideFailure);
    return this.network;
  }
}

export const TEST_IMAGE: ImageRecord = {
  id: `sha256:${'ab'.repeat(32)}`,
  repoTags: ['vmlet.test/busybox:latest'],
  repoDigests: [],
  size: 1_048_576n,
  virtualSize: 67_108_864n,
  format: 'qcow2',
  sourceUrl: 'http://127.0.0.1/busybox.qcow2',
  pulledAtNs: 1_700_000_000_000_000_000n,
};

export class FakeImages implements ImageLookup {
  constructor(private readonly images: ImageRecord[] = [TEST_IMAGE]) {}
  status(ref: string): ImageRecord | undefined {
    return this.images.find((i) => i.repoTags.includes(ref) || i.id === ref);
  }
  blobPath(id: string): string {
    return `/var/lib/vmlet/images/blobs/${id.replace('sha256:', '')}`;
  }
}

export class FakeConsoles implements ConsoleLogs {
  readonly running = new Set<string>();
  failStart: Error | undefined;
  constructor(private readonly log: CallLog) {}
  async start(r: ContainerRecord): Promise<void> {
    this.log.add(`console start ${r.id.slice(0, 12)}`);
    if (this.failStart) throw this.failStart;
    this.running.add(r.id);
  }
  async stop(containerId: string): Promise<void> {
    this.log.add(`console stop ${containerId.slice(0, 12)}`);
    this.running.delete(containerId);
  }
  async reopen(containerId: string): Promise<void> {
    this.log.add(`console reopen ${containerId.slice(0, 12)}`);
  }
}

/** Warm VMs' QMP sockets: every command is logged and answered {}; a failing command by name. */
export class FakeQmp {
  readonly open = new Set<string>();
  failCommand: string | undefined;
  /** With failCommand: only a call whose JSON arguments match fails. */
  failArgs: RegExp | undefined;
  unreachable = false;
  private fdsets = 0;
  /** QEMU ran `command` (e.g. `cont`, which libvirt then sees as RESUMED). */
  onCommand: (path: string, command: string) => void = () => {};
  constructor(private readonly log: CallLog) {}

  readonly connect: QmpConnector = async (path) => {
    this.log.add(`qmp connect ${path}`);
    if (this.unreachable) throw new Error(`connect ENOENT ${path}`);
    this.open.add(path);
    const session: QmpSession = {
      execute: async (command, args) => {
        this.log.add(`qmp ${command}${args ? ` ${JSON.stringify(args)}` : ''}`);
        if (command === this.failCommand && (!this.failArgs || this.failArgs.test(JSON.stringify(args ?? {})))) throw new Error(`QMP ${command} failed (fake)`);
        this.onCommand(path, command);
        return {};
      },
      // add-fd answers a new fd set per call, as QEMU does.
      executeWithFd: async (command, args, fd) => {
        this.log.add(`qmp ${command} ${JSON.stringify(args)} with fd ${fd}`);
        if (command === this.failCommand && (!this.failArgs || this.failArgs.test(JSON.stringify(args)))) throw new Error(`QMP ${command} failed (fake)`);
        return command === 'add-fd' ? { 'fdset-id': this.fdsets++, fd: 100 + fd } : {};
      },
      close: () => {
        this.log.add(`qmp close ${path}`);
        this.open.delete(path);
      },
    };
    return session;
  };
}

/** Deterministic ids: 64 hex from a letter and a counter, and UUIDs from the same counter. */
export function idSource(letter: string): { newId: () => string; newUuid: () => string } {
  let n = 0;
  let u = 0;
  return {
    newId: () => `${(++n).toString(16).padStart(4, '0')}${letter.repeat(60)}`,
    newUuid: () => `00000000-0000-4000-8000-${(++u).toString(16).padStart(12, '0')}`,
  };
}
