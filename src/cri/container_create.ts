/** CreateContainer: validate the container config, then let the container service build the VM. */
import type { CreateContainerRequest__Output } from './generated/runtime/v1/CreateContainerRequest.js';
import type { CreateContainerResponse } from './generated/runtime/v1/CreateContainerResponse.js';
import type { LinuxContainerResources__Output } from './generated/runtime/v1/LinuxContainerResources.js';
import { InvalidArgumentError } from '../errors.js';
import type { ContainerService } from '../container/service.js';
import type { ContainerResources } from '../container/records.js';
import { MAX_IMAGE_NAME_LENGTH } from '../image/reference.js';
import type { HandlerMap } from './rpc.js';
import { requireString, checkString, checkStringMap, checkRelativePath, checkIdOrPrefix, checkAbsolutePath } from './validate.js';
import type { Logger } from '../log.js';
import { reviewContainerConfig } from './unapplied_fields.js';

const MAX_ARGS = 1024;
const MAX_ENVS = 1024;
const MAX_ARG_LENGTH = 128 * 1024;
const MAX_MOUNTS = 64;

export function containerCreateHandlers(containers: ContainerService, logger?: Logger): HandlerMap {
  return {
    async CreateContainer(req: CreateContainerRequest__Output): Promise<CreateContainerResponse> {
      const sandboxId = checkIdOrPrefix(req.pod_sandbox_id, 'pod_sandbox_id');
      const c = req.config;
      if (!c) throw new InvalidArgumentError('config is required');
      if (!c.metadata) throw new InvalidArgumentError('config.metadata is required');
      refuseCdiDevices(c);
      const unapplied = reviewContainerConfig(c);
      const warn = (mount: string, message: string) => logger?.warn({ sandboxId, container: c.metadata?.name, mount }, message);
      const id = await containers.create({
        sandboxId,
        name: requireString(c.metadata.name, 'config.metadata.name'),
        attempt: c.metadata.attempt ?? 0,
        image: requireString(c.image?.image, 'config.image.image', MAX_IMAGE_NAME_LENGTH),
        command: stringList(c.command, 'config.command'),
        args: stringList(c.args, 'config.args'),
        workingDir: checkString(c.working_dir ?? '', 'config.working_dir', 4096),
        envs: envs(c.envs ?? []),
        labels: checkStringMap(c.labels, 'config.labels'),
        annotations: checkStringMap(c.annotations, 'config.annotations'),
        mounts: mounts(c.mounts ?? [], warn),
        imageVolumes: imageVolumes(c.mounts ?? []),
        devices: devices(c.devices ?? []),
        logPath: c.log_path ? checkRelativePath(c.log_path, 'config.log_path') : '',
        resources: resourcesFrom(c.linux?.resources ?? undefined),
      });
      if (unapplied.length > 0) logger?.warn({ sandboxId, containerId: id, container: c.metadata.name, fields: unapplied }, 'container fields not applied to the VM');
      return { container_id: id };
    },
  };
}

function stringList(list: string[] | undefined, field: string): string[] {
  const values = list ?? [];
  if (values.length > MAX_ARGS) throw new InvalidArgumentError(`${field} has more than ${MAX_ARGS} entries`);
  return values.map((v, i) => {
    if (v.length > MAX_ARG_LENGTH) throw new InvalidArgumentError(`${field}[${i}] is too long`);
    if (v.includes('\0')) throw new InvalidArgumentError(`${field}[${i}] contains NUL`);
    return v;
  });
}

function envs(list: { key?: string; value?: string }[]): { key: string; value: string }[] {
  if (list.length > MAX_ENVS) throw new InvalidArgumentError(`config.envs has more than ${MAX_ENVS} entries`);
  return list.map((e, i) => {
    const key = requireString(e.key, `config.envs[${i}].key`, 4096);
    const value = e.value ?? '';
    if (value.length > MAX_ARG_LENGTH || value.includes('\0')) throw new InvalidArgumentError(`config.envs[${i}].value is invalid`);
    return { key, value };
  });
}

/** Where kubelet mounts the termination message; the only /dev path a VM can honour (a file in the guest). */
const TERMINATION_LOG = '/dev/termination-log';

type CriMount = NonNullable<CreateContainerRequest__Output['config']>['mounts'][number];

/**
 * Each mount becomes a share the guest mounts at container_path (src/container/volumes/). What a
 * VM cannot honour is refused by name, never dropped: mount propagation into or out of the VM,
 * id-mapped mounts, /dev paths other than the termination log. selinux_relabel is ignored with a
 * warning (the guest has its own labels); kubelet sets it on every mount of an SELinux node.
 */
export function mounts(list: CriMount[], warn: (mount: string, message: string) => void = () => {}) {
  if (list.length > MAX_MOUNTS) throw new InvalidArgumentError(`config.mounts has more than ${MAX_MOUNTS} entries`);
  const seen = new Set<string>();
  return list.flatMap((m, i) => {
    if (isImageVolume(m)) return []; // imageVolumes() takes those
    const field = `config.mounts[${i}]`;
    const containerPath = guestPath(m.container_path ?? '', `${field}.container_path`);
    const name = `${field} (${containerPath})`;
    const hostPath = checkAbsolutePath(requireString(m.host_path, `${field}.host_path`, 4096), `${name} host_path`);
    if (hostPath !== m.host_path) throw new InvalidArgumentError(`${name} host_path ${JSON.stringify(m.host_path)} is not a normalized path`);
    if (seen.has(containerPath)) throw new InvalidArgumentError(`${name}: container_path is mounted twice`);
    seen.add(containerPath);
    if ((containerPath === '/dev' || containerPath.startsWith('/dev/')) && containerPath !== TERMINATION_LOG) {
      throw new InvalidArgumentError(`${name}: /dev paths other than ${TERMINATION_LOG} cannot be mounted into a VM (device nodes are not passed through)`);
    }
    const propagation = m.propagation ?? 'PROPAGATION_PRIVATE';
    if (String(propagation) !== 'PROPAGATION_PRIVATE') {
      throw new InvalidArgumentError(`${name}: propagation ${String(propagation)} cannot cross into a VM; only PROPAGATION_PRIVATE is supported`);
    }
    if ((m.uidMappings?.length ?? 0) > 0 || (m.gidMappings?.length ?? 0) > 0) {
      throw new InvalidArgumentError(`${name}: id-mapped mounts (uidMappings/gidMappings) are not supported by vmlet`);
    }
    if (m.recursive_read_only && !m.readonly) throw new InvalidArgumentError(`${name}: recursive_read_only needs readonly`);
    if (m.selinux_relabel) warn(name, 'selinux_relabel ignored: the host path is not relabelled; the guest keeps its own labels');
    return [{ container_path: containerPath, host_path: hostPath, readonly: m.readonly ?? false }];
  });
}

function isImageVolume(m: CriMount): boolean {
  return (m.image?.image ?? '') !== '';
}

/**
 * Image volumes (Kubernetes' `image` volume source, CRI Mount.image): each containerDisk becomes
 * a read-only disk of the VM (src/container/create.ts). Kubernetes mounts image volumes read-only
 * whatever `readonly` says, and so does vmlet. A sub-path of an image, propagation, id mappings
 * or a host path beside the image cannot apply to a disk and are refused by name.
 */
export function imageVolumes(list: CriMount[]): { container_path: string; image: string }[] {
  const out: { container_path: string; image: string }[] = [];
  const seen = new Set<string>();
  for (const [i, m] of list.entries()) {
    const field = `config.mounts[${i}]`;
    const containerPath = guestPath(m.container_path ?? '', `${field}.container_path`);
    if (seen.has(containerPath)) throw new InvalidArgumentError(`${field} (${containerPath}): container_path is mounted twice`);
    seen.add(containerPath);
    if (!isImageVolume(m)) continue;
    const image = requireString(m.image!.image, `${field}.image.image`, MAX_IMAGE_NAME_LENGTH);
    const name = `${field} (image ${image} at ${containerPath})`;
    if ((m.host_path ?? '') !== '') throw new InvalidArgumentError(`${name}: host_path must be empty for an image volume`);
    if ((m.image_sub_path ?? '') !== '') throw new InvalidArgumentError(`${name}: image_sub_path ${JSON.stringify(m.image_sub_path)} cannot apply: the image becomes a whole disk of the VM`);
    if (String(m.propagation ?? 'PROPAGATION_PRIVATE') !== 'PROPAGATION_PRIVATE') {
      throw new InvalidArgumentError(`${name}: propagation ${String(m.propagation)} cannot apply to a VM disk; only PROPAGATION_PRIVATE is supported`);
    }
    if ((m.uidMappings?.length ?? 0) > 0 || (m.gidMappings?.length ?? 0) > 0) {
      throw new InvalidArgumentError(`${name}: id-mapped mounts (uidMappings/gidMappings) are not supported by vmlet`);
    }
    out.push({ container_path: containerPath, image });
  }
  return out;
}

/** An absolute, normalized guest path other than "/" without control characters. */
function guestPath(value: string, field: string): string {
  const path = checkAbsolutePath(requireString(value, field, 4096), field);
  if (path !== value || path === '/' || path.endsWith('/')) throw new InvalidArgumentError(`${field} ${JSON.stringify(value)} must be a normalized absolute path other than /`);
  return path;
}

type CriDeviceInput = NonNullable<CreateContainerRequest__Output['config']>['devices'][number];

/**
 * config.devices, shaped: each must be a block device, which becomes a VM disk; what each path
 * is on the host is checked by the container service (src/container/block_devices/plan.ts), which
 * refuses every other kind of device by name (INVALID_ARGUMENT).
 */
export function devices(list: CriDeviceInput[]): { container_path: string; host_path: string; permissions: string }[] {
  if (list.length > MAX_DEVICES) throw new InvalidArgumentError(`config.devices has more than ${MAX_DEVICES} entries`);
  return list.map((d, i) => ({
    container_path: requireString(d.container_path, `config.devices[${i}].container_path`, 4096),
    host_path: requireString(d.host_path, `config.devices[${i}].host_path`, 4096),
    permissions: checkString(d.permissions ?? '', `config.devices[${i}].permissions`, 3),
  }));
}

const MAX_DEVICES = 64;

/** cdi_devices would need PCI passthrough of each device, which vmlet does not do yet. */
function refuseCdiDevices(c: NonNullable<CreateContainerRequest__Output['config']>): void {
  if ((c.CDI_devices?.length ?? 0) > 0) {
    const names = c.CDI_devices.map((d) => d.name ?? '').join(', ');
    throw new InvalidArgumentError(`config.cdi_devices (${names}) are not supported: vmlet does not pass host devices into its VMs`);
  }
}

const INT64 = /^-?\d{1,19}$/;

export function resourcesFrom(r: LinuxContainerResources__Output | undefined): ContainerResources {
  const out: ContainerResources = {};
  if (!r) return out;
  const take = (v: string | undefined, field: string): string | undefined => {
    if (v === undefined || v === '' || v === '0') return undefined;
    if (!INT64.test(v) || BigInt(v) < 0n) throw new InvalidArgumentError(`${field} ${v} is not a non-negative integer`);
    return v;
  };
  const period = take(r.cpu_period, 'linux.resources.cpu_period');
  const quota = take(r.cpu_quota, 'linux.resources.cpu_quota');
  const shares = take(r.cpu_shares, 'linux.resources.cpu_shares');
  const memory = take(r.memory_limit_in_bytes, 'linux.resources.memory_limit_in_bytes');
  if (period) out.cpuPeriod = period;
  if (quota) out.cpuQuota = quota;
  if (shares) out.cpuShares = shares;
  if (memory) out.memoryLimitInBytes = memory;
  return out;
}
