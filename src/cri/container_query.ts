/** ContainerStatus and ListContainers, answered from serve's records (kept current by libvirt events). */
import type { ContainerStatusRequest__Output } from './generated/runtime/v1/ContainerStatusRequest.js';
import type { ContainerStatusResponse } from './generated/runtime/v1/ContainerStatusResponse.js';
import type { ContainerStatus } from './generated/runtime/v1/ContainerStatus.js';
import type { ListContainersRequest__Output } from './generated/runtime/v1/ListContainersRequest.js';
import type { ListContainersResponse } from './generated/runtime/v1/ListContainersResponse.js';
import type { Container } from './generated/runtime/v1/Container.js';
import type { ContainerService } from '../container/service.js';
import type { ContainerRecord, ContainerState } from '../container/records.js';
import { InvalidArgumentError, errorText } from '../errors.js';
import type { HandlerMap } from './rpc.js';
import { loadCriServices } from './proto.js';
import { RepeatedFieldEncoder, type EncodedMessage } from './encoded_list.js';
import { checkIdOrPrefix, checkStringMap } from './validate.js';

const STATE: Record<ContainerState, 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN'> = {
  CREATED: 'CONTAINER_CREATED',
  RUNNING: 'CONTAINER_RUNNING',
  EXITED: 'CONTAINER_EXITED',
  UNKNOWN: 'CONTAINER_UNKNOWN',
};
const FROM_CRI = Object.fromEntries(Object.entries(STATE).map(([k, v]) => [v, k])) as Record<string, ContainerState>;

export function containerQueryHandlers(containers: ContainerService): HandlerMap {
  const listEncoder = new RepeatedFieldEncoder<ContainerRecord>(
    loadCriServices().runtimeService.ListContainers.responseSerialize as (v: object) => Buffer,
    'containers',
    containerItem,
  );
  return {
    async ContainerStatus(req: ContainerStatusRequest__Output): Promise<ContainerStatusResponse> {
      const r = containers.mustGet(checkIdOrPrefix(req.container_id, 'container_id'));
      const response: ContainerStatusResponse = { status: containerStatus(r) };
      if (req.verbose) {
        let domainXml = '';
        try {
          domainXml = (await containers.domainXml(r)) ?? '';
        } catch (err) {
          domainXml = `unavailable: ${errorText(err)}`;
        }
        response.info = { info: JSON.stringify({ sandboxId: r.sandboxId, domain: r.domainName, vm: r.vm, command: r.command, args: r.args, domainXml }) };
      }
      return response;
    },

    async ListContainers(req: ListContainersRequest__Output): Promise<ListContainersResponse | EncodedMessage> {
      const f = req.filter;
      let state: ContainerState | undefined;
      if (f?.state) {
        state = FROM_CRI[f.state.state ?? 'CONTAINER_CREATED'];
        if (!state) throw new InvalidArgumentError(`filter.state ${f.state.state} is unknown`);
      }
      if (f?.id && !/^[a-f0-9]{1,64}$/.test(f.id)) return { containers: [] };
      if (f?.pod_sandbox_id && !/^[a-f0-9]{1,64}$/.test(f.pod_sandbox_id)) return { containers: [] };
      const records = containers.list({
        id: f?.id || undefined,
        sandboxId: f?.pod_sandbox_id || undefined,
        state,
        labels: checkStringMap(f?.label_selector, 'filter.label_selector'),
      });
      return listEncoder.encode(records);
    },
  };
}

function containerItem(r: ContainerRecord): Container {
  return {
    id: r.id,
    pod_sandbox_id: r.sandboxId,
    metadata: { name: r.metadata.name, attempt: r.metadata.attempt },
    image: { image: r.image },
    image_ref: r.imageRef,
    state: STATE[r.state],
    created_at: r.createdAtNs,
    labels: r.labels,
    annotations: r.annotations,
  };
}

export function containerStatus(r: ContainerRecord): ContainerStatus {
  const status: ContainerStatus = {
    id: r.id,
    metadata: { name: r.metadata.name, attempt: r.metadata.attempt },
    state: STATE[r.state],
    created_at: r.createdAtNs,
    image: { image: r.image },
    image_ref: r.imageRef,
    labels: r.labels,
    annotations: r.annotations,
    mounts: r.mounts,
    log_path: r.logPath,
    resources: { linux: linuxResources(r) },
  };
  if (r.startedAtNs) status.started_at = r.startedAtNs;
  if (r.state === 'EXITED') {
    status.finished_at = r.finishedAtNs ?? '0';
    status.exit_code = r.exitCode ?? 0;
    status.reason = r.reason ?? '';
    if (r.message) status.message = r.message;
  }
  return status;
}

/** The resources in effect, as containerd reports them (swap limit mirrors the memory limit). */
function linuxResources(r: ContainerRecord) {
  const res = r.resources;
  return {
    ...(res.cpuPeriod ? { cpu_period: res.cpuPeriod } : {}),
    ...(res.cpuQuota ? { cpu_quota: res.cpuQuota } : {}),
    ...(res.cpuShares ? { cpu_shares: res.cpuShares } : {}),
    ...(res.memoryLimitInBytes ? { memory_limit_in_bytes: res.memoryLimitInBytes, memory_swap_limit_in_bytes: res.memoryLimitInBytes } : {}),
  };
}
