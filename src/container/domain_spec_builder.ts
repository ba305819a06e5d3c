/**
 * Pure: what a container's VM looks like, from the CRI container config, its sandbox, the pod's
 * Virtlet annotations and the host's facts. The domain XML is then a pure function of the result.
 */
import type { CpuTune, DataDisk, RootDisk, Share, VmSpec } from '../libvirt/domain_spec.js';
import { nicsFromNetwork } from '../libvirt/domain_spec.js';
import type { VmAnnotations } from '../guest/annotations.js';
import type { VmNetwork } from '../network/types.js';
import type { ContainerResources, PersistentRootRef } from './records.js';
import { InvalidArgumentError } from '../errors.js';
import { tapNicQemuArgs } from '../vmwrapper/tap_nic_args.js';
import { vmwrapperEnv } from '../vmwrapper/netns_env.js';
import type { QemuUser } from '../vmwrapper/qemu_user.js';
import { consoleSocketPath, guestAgentSocketPath } from './vm_sockets.js';

export interface HostFacts {
  domainType: 'kvm' | 'qemu';
  emulator: string;
  /** The unprivileged user the launcher runs QEMU as (--qemu-user); absent = uid 0. */
  qemuUser?: QemuUser;
  defaultMemoryBytes: number;
  defaultVcpus: number;
}

export interface VmInputs {
  containerId: string;
  sandboxId: string;
  /** The creating vmlet's owner id (ownerIdFor its state dir). */
  owner: string;
  domainName: string;
  domainUuid: string;
  resources: ContainerResources;
  annotations: VmAnnotations;
  network: VmNetwork;
  netnsName: string;
  overlayPath: string;
  /** Set: the root disk is this persistent root device instead of the overlay. */
  persistentRoot?: PersistentRootRef;
  seedPath: string;
  consolePath: string;
  /** Where the VM's guest agent and console sockets go (src/container/vm_sockets.ts). */
  socketDir: string;
  /** The VM's volume shares (src/container/volumes/plan.ts). */
  shares?: Share[];
  /** The pod's block devices (src/container/block_devices/plan.ts). */
  dataDisks?: DataDisk[];
}

const MIB = 1024 * 1024;
/** Smallest VM worth starting: below this a guest kernel does not boot. */
const MIN_MEMORY = 64 * MIB;
const MAX_VCPUS = 255;

export function memoryBytesFor(resources: ContainerResources, host: HostFacts): number {
  const limit = resources.memoryLimitInBytes ? BigInt(resources.memoryLimitInBytes) : 0n;
  if (limit <= 0n) return host.defaultMemoryBytes;
  if (limit < BigInt(MIN_MEMORY)) throw new InvalidArgumentError(`memory limit ${limit} bytes is below the ${MIN_MEMORY / MIB} MiB a VM needs`);
  if (limit > BigInt(Number.MAX_SAFE_INTEGER)) throw new InvalidArgumentError(`memory limit ${limit} bytes is too large`);
  // libvirt counts KiB; round up to whole MiB so the guest gets at least the limit.
  return Math.ceil(Number(limit) / MIB) * MIB;
}

export function vcpusFor(resources: ContainerResources, annotations: VmAnnotations, explicit: boolean, host: HostFacts): number {
  if (explicit) return annotations.vcpuCount;
  const quota = resources.cpuQuota ? Number(resources.cpuQuota) : 0;
  const period = resources.cpuPeriod ? Number(resources.cpuPeriod) : 0;
  if (quota > 0 && period > 0) return Math.min(MAX_VCPUS, Math.max(1, Math.ceil(quota / period)));
  return host.defaultVcpus;
}

/** The CRI's CPU shares/period/quota as libvirt cputune; only the fields set (> 0). */
export function cputuneFor(r: ContainerResources): CpuTune {
  const cputune: CpuTune = {};
  if (r.cpuShares && Number(r.cpuShares) > 0) cputune.shares = Number(r.cpuShares);
  if (r.cpuPeriod && Number(r.cpuPeriod) > 0) cputune.period = Number(r.cpuPeriod);
  if (r.cpuQuota && Number(r.cpuQuota) > 0) cputune.quota = Number(r.cpuQuota);
  return cputune;
}

export function buildVmSpec(inputs: VmInputs, host: HostFacts, vcpuAnnotationGiven: boolean): VmSpec {
  const r = inputs.resources;
  const nics = nicsFromNetwork(inputs.network);
  const cputune = cputuneFor(r);
  return {
    name: inputs.domainName,
    uuid: inputs.domainUuid,
    domainType: host.domainType,
    emulator: host.emulator,
    memoryBytes: memoryBytesFor(r, host),
    vcpus: vcpusFor(r, inputs.annotations, vcpuAnnotationGiven, host),
    ...(Object.keys(cputune).length > 0 ? { cputune } : {}),
    ...(inputs.annotations.cpuModel === 'host-model' && host.domainType === 'kvm' ? { cpuMode: 'host-model' as const } : {}),
    rootDisk: rootDiskFor(inputs),
    seed: { path: inputs.seedPath, kind: inputs.annotations.cloudInitImageType },
    ...(inputs.dataDisks && inputs.dataDisks.length > 0 ? { dataDisks: inputs.dataDisks } : {}),
    console: { kind: 'unix', socketPath: consoleSocketPath(inputs.socketDir, inputs.containerId), logPath: inputs.consolePath },
    guestAgentSocket: guestAgentSocketPath(inputs.socketDir, inputs.containerId),
    // TAPs live in the pod netns where only QEMU (inside it through the vmwrapper) can open them.
    nics: nics.filter((n) => n.kind !== 'tap'),
    ...(inputs.shares && inputs.shares.length > 0 ? { shares: inputs.shares } : {}),
    emulatorArgs: tapNicQemuArgs(nics.flatMap((n) => (n.kind === 'tap' ? [{ tap: n.tap, mac: n.mac, mtu: n.mtu }] : []))),
    emulatorEnv: vmwrapperEnv(inputs.netnsName),
    ...(host.qemuUser !== undefined ? { filesLabelledByVmlet: true } : {}),
    metadata: { sandboxId: inputs.sandboxId, containerId: inputs.containerId, owner: inputs.owner },
  };
}

function rootDiskFor(inputs: VmInputs): RootDisk {
  const driver = inputs.annotations.diskDriver;
  const p = inputs.persistentRoot;
  if (p) return { path: p.device, format: 'raw', driver, slice: { offset: p.offset, size: p.size } };
  return { path: inputs.overlayPath, format: 'qcow2', driver };
}
