/** PodSandboxStatus and ListPodSandbox, answered from serve's records. */
import type { PodSandboxStatusRequest__Output } from './generated/runtime/v1/PodSandboxStatusRequest.js';
import type { PodSandboxStatusResponse } from './generated/runtime/v1/PodSandboxStatusResponse.js';
import type { PodSandboxStatus } from './generated/runtime/v1/PodSandboxStatus.js';
import type { ListPodSandboxRequest__Output } from './generated/runtime/v1/ListPodSandboxRequest.js';
import type { ListPodSandboxResponse } from './generated/runtime/v1/ListPodSandboxResponse.js';
import type { PodSandbox } from './generated/runtime/v1/PodSandbox.js';
import type { SandboxService } from '../sandbox/service.js';
import type { SandboxRecord } from '../sandbox/records.js';
import { InvalidArgumentError, errorText } from '../errors.js';
import type { HandlerMap } from './rpc.js';
import { loadCriServices } from './proto.js';
import { RepeatedFieldEncoder, type EncodedMessage } from './encoded_list.js';
import { checkIdOrPrefix, checkStringMap } from './validate.js';
import { nowNs } from '../clock.js';
import { MULTUS_NETWORK_STATUS_KEY } from '../network/cni/pod_networks.js';

const STATE: Record<SandboxRecord['state'], 'SANDBOX_READY' | 'SANDBOX_NOTREADY'> = {
  READY: 'SANDBOX_READY',
  NOTREADY: 'SANDBOX_NOTREADY',
};

export function sandboxQueryHandlers(sandboxes: SandboxService): HandlerMap {
  const listEncoder = new RepeatedFieldEncoder<SandboxRecord>(
    loadCriServices().runtimeService.ListPodSandbox.responseSerialize as (v: object) => Buffer,
    'items',
    sandboxItem,
  );
  return {
    async PodSandboxStatus(req: PodSandboxStatusRequest__Output): Promise<PodSandboxStatusResponse> {
      const record = sandboxes.mustGet(checkIdOrPrefix(req.pod_sandbox_id, 'pod_sandbox_id'));
      const response: PodSandboxStatusResponse = { status: sandboxStatus(record), timestamp: nowNs().toString() };
      if (req.verbose) {
        const info = await verboseInfo(sandboxes, record);
        response.info = { info: JSON.stringify(info) };
        // As Multus annotates pods: every network's interfaces, IPs, MAC and default flag.
        const networkStatus = (info.network as { networkStatus?: unknown } | null)?.networkStatus;
        if (networkStatus !== undefined) response.info[MULTUS_NETWORK_STATUS_KEY] = JSON.stringify(networkStatus);
      }
      return response;
    },

    async ListPodSandbox(req: ListPodSandboxRequest__Output): Promise<ListPodSandboxResponse | EncodedMessage> {
      const f = req.filter;
      let state: SandboxRecord['state'] | undefined;
      if (f?.state) {
        const s = f.state.state ?? 'SANDBOX_READY';
        if (s !== 'SANDBOX_READY' && s !== 'SANDBOX_NOTREADY') throw new InvalidArgumentError(`filter.state ${s} is unknown`);
        state = s === 'SANDBOX_READY' ? 'READY' : 'NOTREADY';
      }
      if (f?.id && !/^[a-f0-9]{1,64}$/.test(f.id)) return { items: [] };
      const records = sandboxes.list({ id: f?.id || undefined, state, labels: checkStringMap(f?.label_selector, 'filter.label_selector') });
      return listEncoder.encode(records);
    },
  };
}

function metadataOf(r: SandboxRecord) {
  return { name: r.metadata.name, uid: r.metadata.uid, namespace: r.metadata.namespace, attempt: r.metadata.attempt };
}

function sandboxItem(r: SandboxRecord): PodSandbox {
  return {
    id: r.id,
    metadata: metadataOf(r),
    state: STATE[r.state],
    created_at: r.createdAtNs,
    labels: r.labels,
    annotations: r.annotations,
    runtime_handler: r.runtimeHandler,
  };
}

export function sandboxStatus(r: SandboxRecord): PodSandboxStatus {
  const ips = r.state === 'READY' ? r.podIps ?? [] : [];
  return {
    id: r.id,
    metadata: metadataOf(r),
    state: STATE[r.state],
    created_at: r.createdAtNs,
    network: ips.length > 0 ? { ip: ips[0], additional_ips: ips.slice(1).map((ip) => ({ ip })) } : {},
    linux: { namespaces: { options: { network: 'POD', pid: 'POD', ipc: 'POD' } } },
    labels: r.labels,
    annotations: r.annotations,
    runtime_handler: r.runtimeHandler,
  };
}

async function verboseInfo(sandboxes: SandboxService, r: SandboxRecord): Promise<{ network: unknown } & Record<string, unknown>> {
  let network: unknown = null;
  let networkError: string | undefined;
  if (r.podIps) {
    try {
      // CNI's spec lets a runtime CHECK whenever it wants; a verbose status is when someone looks.
      network = await sandboxes.networkStatus(r.id, r.state === 'READY');
    } catch (err) {
      networkError = errorText(err);
    }
  }
  return {
    netnsPath: r.netnsPath ?? '',
    hostname: r.hostname,
    dns: r.dns,
    portMappings: r.portMappings,
    network,
    ...(networkError ? { networkError } : {}),
    ...(r.notReadyReason ? { notReadyReason: r.notReadyReason } : {}),
    ...(r.pendingCleanup ? { pendingCleanup: r.pendingCleanup } : {}),
  };
}
