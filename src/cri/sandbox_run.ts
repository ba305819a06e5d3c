/** RunPodSandbox: validate the pod config, then let the sandbox service build it. */
import type { RunPodSandboxRequest__Output } from './generated/runtime/v1/RunPodSandboxRequest.js';
import type { RunPodSandboxResponse } from './generated/runtime/v1/RunPodSandboxResponse.js';
import type { PodSandboxConfig__Output } from './generated/runtime/v1/PodSandboxConfig.js';
import { isIP } from 'node:net';
import { InvalidArgumentError } from '../errors.js';
import type { SandboxService, SandboxSpec } from '../sandbox/service.js';
import type { PortMappingSpec } from '../netd/protocol.js';
import type { HandlerMap } from './rpc.js';
import { hostnameFromPodName } from '../sandbox/hostname.js';
import { requireString, checkString, checkStringMap, checkAbsolutePath, checkHostname } from './validate.js';
import { reviewSandboxConfig } from './unapplied_fields.js';
import type { Logger } from '../log.js';

const MAX_DNS_ENTRIES = 32;
const MAX_PORT_MAPPINGS = 256;
/** Runtime handlers vmlet serves: the default one (empty) and its own name. */
const RUNTIME_HANDLERS = new Set(['', 'vmlet']);

export function sandboxRunHandlers(sandboxes: SandboxService, logger?: Logger): HandlerMap {
  return {
    async RunPodSandbox(req: RunPodSandboxRequest__Output): Promise<RunPodSandboxResponse> {
      const handler = checkString(req.runtime_handler ?? '', 'runtime_handler', 63);
      if (!RUNTIME_HANDLERS.has(handler)) throw new InvalidArgumentError(`runtime_handler ${JSON.stringify(handler)} is not served by vmlet (use "" or "vmlet")`);
      const spec = sandboxSpecFromConfig(req.config, handler);
      const unapplied = reviewSandboxConfig(req.config!);
      const id = await sandboxes.run(spec);
      if (unapplied.length > 0) logger?.warn({ sandboxId: id, pod: spec.metadata.name, fields: unapplied }, 'pod fields not applied to the VM');
      return { pod_sandbox_id: id };
    },
  };
}

export function sandboxSpecFromConfig(config: PodSandboxConfig__Output | undefined, runtimeHandler: string): SandboxSpec {
  if (!config) throw new InvalidArgumentError('config is required');
  const m = config.metadata;
  if (!m) throw new InvalidArgumentError('config.metadata is required');
  const metadata = {
    name: cniArgSafe(requireString(m.name, 'config.metadata.name'), 'config.metadata.name'),
    uid: cniArgSafe(requireString(m.uid, 'config.metadata.uid'), 'config.metadata.uid'),
    namespace: cniArgSafe(requireString(m.namespace, 'config.metadata.namespace'), 'config.metadata.namespace'),
    attempt: m.attempt ?? 0,
  };
  if (config.linux?.security_context?.namespace_options?.network === 'NODE') {
    throw new InvalidArgumentError('hostNetwork pods are not supported: a VM pod cannot share the host network namespace');
  }
  const dns = config.dns_config;
  return {
    metadata,
    // A hostname the caller gave must be valid; none at all means one derived from the pod name,
    // stored in the record so that DHCP, the seed and PodSandboxStatus all see the same one.
    hostname: config.hostname ? checkHostname(config.hostname, 'config.hostname') : hostnameFromPodName(metadata.name),
    logDirectory: config.log_directory ? checkAbsolutePath(config.log_directory, 'config.log_directory') : '',
    runtimeHandler,
    labels: checkStringMap(config.labels, 'config.labels'),
    annotations: checkStringMap(config.annotations, 'config.annotations'),
    dns: {
      servers: stringList(dns?.servers, 'config.dns_config.servers').map((v, i) => ipAddress(v, `config.dns_config.servers[${i}]`)),
      searches: stringList(dns?.searches, 'config.dns_config.searches').map((v, i) => resolvWord(v, `config.dns_config.searches[${i}]`)),
      options: stringList(dns?.options, 'config.dns_config.options').map((v, i) => resolvWord(v, `config.dns_config.options[${i}]`)),
    },
    portMappings: portMappings(config.port_mappings ?? []),
  };
}

/**
 * The pod's name, namespace and uid reach CNI plugins in CNI_ARGS (`K=V;K=V`), where `;` and `=`
 * would forge other keys: refused here, naming the field, before anything is made.
 */
function cniArgSafe(value: string, field: string): string {
  if (/[;=]/.test(value)) throw new InvalidArgumentError(`${field} ${JSON.stringify(value.slice(0, 64))} contains ";" or "=", which CNI_ARGS cannot carry`);
  return value;
}

/** DNS servers go to the guest by DHCP and the seed: addresses only. */
function ipAddress(value: string, field: string): string {
  if (isIP(value) === 0) throw new InvalidArgumentError(`${field} ${JSON.stringify(value.slice(0, 64))} is not an IP address`);
  return value;
}

/** One word of resolv.conf (a search domain, an option): whitespace would start another entry. */
function resolvWord(value: string, field: string): string {
  if (value === '' || /[\s\x00-\x1f\x7f]/.test(value)) throw new InvalidArgumentError(`${field} ${JSON.stringify(value.slice(0, 64))} must be one word without whitespace or control characters`);
  return value;
}

function stringList(list: string[] | undefined, field: string): string[] {
  const values = list ?? [];
  if (values.length > MAX_DNS_ENTRIES) throw new InvalidArgumentError(`${field} has more than ${MAX_DNS_ENTRIES} entries`);
  return values.map((v, i) => checkString(v, `${field}[${i}]`));
}

function portMappings(list: NonNullable<PodSandboxConfig__Output['port_mappings']>): PortMappingSpec[] {
  if (list.length > MAX_PORT_MAPPINGS) throw new InvalidArgumentError(`config.port_mappings has more than ${MAX_PORT_MAPPINGS} entries`);
  return list.map((p, i) => {
    const field = `config.port_mappings[${i}]`;
    const containerPort = p.container_port ?? 0;
    const hostPort = p.host_port ?? 0;
    if (containerPort < 1 || containerPort > 65535) throw new InvalidArgumentError(`${field}.container_port ${containerPort} is not a port number`);
    if (hostPort < 0 || hostPort > 65535) throw new InvalidArgumentError(`${field}.host_port ${hostPort} is not a port number`);
    const protocol = (p.protocol ?? 'TCP').toLowerCase();
    if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'sctp') throw new InvalidArgumentError(`${field}.protocol ${p.protocol} is unknown`);
    const hostIP = checkString(p.host_ip ?? '', `${field}.host_ip`, 45);
    if (hostIP !== '' && !/^[0-9a-fA-F:.]+$/.test(hostIP)) throw new InvalidArgumentError(`${field}.host_ip ${JSON.stringify(hostIP)} is not an IP address`);
    return { protocol, containerPort, hostPort, hostIP };
  });
}
