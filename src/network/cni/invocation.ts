/**
 * Pure pieces of a plugin call: the validated identifiers, CNI_ARGS, the environment and the
 * stdin configuration derived from a list entry (spec: "Deriving execution configuration").
 */
import { InvalidArgumentError } from '../../errors.js';
import type { NetworkConfigList, PluginConfig } from './config.js';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION';

/** The pod a sandbox network belongs to, passed to plugins in CNI_ARGS the way kubelet does. */
export interface PodArgs {
  namespace: string;
  name: string;
  /** The sandbox id (kubelet's "infra container"). */
  infraContainerId: string;
  uid: string;
}

/**
 * Runtime values offered to plugins that declare the capability (conventions.md): portMappings,
 * dns, bandwidth, ipRanges, mac, ips, … Keys a plugin does not declare never reach it.
 */
export type CapabilityArgs = Readonly<Record<string, unknown>>;

/** Spec: starts alphanumeric, then alphanumerics, "_", "." or "-". Bounded so it fits file names. */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** Spec: not empty, not "." or "..", under 16 characters, no "/", ":" or whitespace. */
const IFNAME = /^[^\s/:]{1,15}$/;
/** CNI_ARGS values: Kubernetes names, namespaces, UIDs and ids all fit this; ";" and "=" never do. */
const CNI_ARG_VALUE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;

export function validateContainerId(id: unknown): string {
  if (typeof id !== 'string' || !CONTAINER_ID.test(id)) {
    throw new InvalidArgumentError(`CNI container id ${JSON.stringify(id)} is invalid`);
  }
  return id;
}

export function validateIfName(name: unknown): string {
  if (typeof name !== 'string' || !IFNAME.test(name) || name === '.' || name === '..') {
    throw new InvalidArgumentError(`CNI interface name ${JSON.stringify(name)} is invalid`);
  }
  return name;
}

/** A netns path must be absolute and plain; the empty string means "no netns" (DEL only). */
export function validateNetnsPath(path: unknown, allowEmpty: boolean): string {
  if (path === '' && allowEmpty) return '';
  if (typeof path !== 'string' || !path.startsWith('/') || path.split('/').includes('..') || /[\0\n]/.test(path)) {
    throw new InvalidArgumentError(`netns path ${JSON.stringify(path)} is invalid`);
  }
  return path;
}

function argValue(key: string, value: unknown): string {
  if (typeof value !== 'string' || !CNI_ARG_VALUE.test(value)) {
    throw new InvalidArgumentError(`CNI_ARGS value for ${key} ${JSON.stringify(value)} is invalid`);
  }
  return value;
}

/**
 * `IgnoreUnknown=1;K8S_POD_NAMESPACE=…;K8S_POD_NAME=…;K8S_POD_INFRA_CONTAINER_ID=…;K8S_POD_UID=…`.
 * IgnoreUnknown keeps plugins that know none of the K8S_ keys from refusing them. Without a pod
 * there is nothing to pass and the result is empty.
 */
export function buildCniArgs(pod: PodArgs | undefined): string {
  if (!pod) return '';
  const pairs: [string, string][] = [
    ['IgnoreUnknown', '1'],
    ['K8S_POD_NAMESPACE', argValue('K8S_POD_NAMESPACE', pod.namespace)],
    ['K8S_POD_NAME', argValue('K8S_POD_NAME', pod.name)],
    ['K8S_POD_INFRA_CONTAINER_ID', argValue('K8S_POD_INFRA_CONTAINER_ID', pod.infraContainerId)],
    ['K8S_POD_UID', argValue('K8S_POD_UID', pod.uid)],
  ];
  return pairs.map(([k, v]) => `${k}=${v}`).join(';');
}

/** The runtimeConfig a plugin gets: only capabilities it declares `true` and the runtime has a value for. */
export function selectRuntimeConfig(plugin: PluginConfig, capabilityArgs: CapabilityArgs | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!plugin.capabilities || !capabilityArgs) return out;
  for (const [cap, enabled] of Object.entries(plugin.capabilities)) {
    if (enabled === true && Object.hasOwn(capabilityArgs, cap) && capabilityArgs[cap] !== undefined) {
      out[cap] = capabilityArgs[cap];
    }
  }
  return out;
}

/**
 * The JSON a plugin reads on stdin: its list entry with the list's `name` and `cniVersion`,
 * `prevResult` when there is one, `runtimeConfig` with its declared capabilities, and no
 * `capabilities` key (the spec has the runtime remove it). A static `runtimeConfig` written in the
 * file stays when the runtime has nothing to put there, as libcni does.
 */
export function buildPluginConfig(
  list: NetworkConfigList,
  plugin: PluginConfig,
  opts: { prevResult?: unknown; capabilityArgs?: CapabilityArgs },
): Record<string, unknown> {
  const { capabilities: _dropped, ...rest } = plugin;
  const out: Record<string, unknown> = { ...rest, name: list.name, cniVersion: list.cniVersion };
  const runtimeConfig = selectRuntimeConfig(plugin, opts.capabilityArgs);
  if (Object.keys(runtimeConfig).length > 0) out.runtimeConfig = runtimeConfig;
  if (opts.prevResult !== undefined) out.prevResult = opts.prevResult;
  else delete out.prevResult;
  return out;
}

export interface PluginEnvInput {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifName: string;
  cniArgs: string;
  /** Bin dirs, joined with ":" into CNI_PATH so plugins find their delegates (IPAM). */
  binDirs: readonly string[];
  /** PATH for the plugin's own helpers (iptables, ip); the host's when not given. */
  path: string;
}

/** The plugin's whole environment: the CNI_ variables and PATH, nothing inherited. */
export function buildPluginEnv(input: PluginEnvInput): Record<string, string> {
  return {
    CNI_COMMAND: input.command,
    CNI_CONTAINERID: input.containerId,
    CNI_NETNS: input.netns,
    CNI_IFNAME: input.ifName,
    CNI_ARGS: input.cniArgs,
    CNI_PATH: input.binDirs.join(':'),
    PATH: input.path,
  };
}
