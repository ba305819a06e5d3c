/** CreateContainer: validate the container config, then let the container service build the VM. */
import type { CreateContainerRequest__Output } from './generated/runtime/v1/CreateContainerRequest.js';
import type { CreateContainerResponse } from './generated/runtime/v1/CreateContainerResponse.js';
import type { LinuxContainerResources__Output } from './generated/runtime/v1/LinuxContainerResources.js';
import { InvalidArgumentError } from '../errors.js';
import type { ContainerService } from '../container/service.js';
import type { ContainerResources } from '../container/records.js';
import { MAX_IMAGE_NAME_LENGTH } from '../image/reference.js';
import type { HandlerMap } from './rpc.js';
import { requireString, checkString, checkStringMap, checkRelativePath, checkIdOrPrefix } from './validate.js';

const MAX_ARGS = 1024;
const MAX_ENVS = 1024;
const MAX_ARG_LENGTH = 128 * 1024;
const MAX_MOUNTS = 64;

export function containerCreateHandlers(containers: ContainerService): HandlerMap {
  return {
    async CreateContainer(req: CreateContainerRequest__Output): Promise<CreateContainerResponse> {
      const sandboxId = checkIdOrPrefix(req.pod_sandbox_id, 'pod_sandbox_id');
      const c = req.config;
      if (!c) throw new InvalidArgumentError('config is required');
      if (!c.metadata) throw new InvalidArgumentError('config.metadata is required');
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
        mounts: mounts(c.mounts ?? []),
        logPath: c.log_path ? checkRelativePath(c.log_path, 'config.log_path') : '',
        resources: resourcesFrom(c.linux?.resources ?? undefined),
      });
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

function mounts(list: { container_path?: string; host_path?: string; readonly?: boolean; image?: { image?: string } | null }[]) {
  if (list.length > MAX_MOUNTS) throw new InvalidArgumentError(`config.mounts has more than ${MAX_MOUNTS} entries`);
  const imageMount = list.findIndex((m) => (m.image?.image ?? '') !== '');
  if (imageMount >= 0) {
    throw new InvalidArgumentError(`config.mounts[${imageMount}].image (${JSON.stringify(list[imageMount]!.image!.image)}): image volumes are not supported by vmlet yet`);
  }
  // Recorded and reported in ContainerStatus; a VM cannot bind-mount host paths.
  return list.map((m, i) => ({
    container_path: checkString(m.container_path ?? '', `config.mounts[${i}].container_path`, 4096),
    host_path: checkString(m.host_path ?? '', `config.mounts[${i}].host_path`, 4096),
    readonly: m.readonly ?? false,
  }));
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
