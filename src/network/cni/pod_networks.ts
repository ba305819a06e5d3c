/**
 * Which CNI networks a pod asks for, from its annotations, in the two forms clusters use:
 * - CNI-Genie's (and Virtlet's) `cni: "calico,flannel"`: networks by conflist name, ADDed in that
 *   order as eth0, eth1, …; the first is the pod's default network (its gateway is the default route).
 * - Multus's `k8s.v1.cni.cncf.io/networks`: eth0 from the default conflist, then each named network
 *   as net1, net2, … (or the interface it names), in the short form `[namespace/]name[@ifname]`,
 *   comma separated, or as a JSON list of {name, namespace, interface, mac, ips} and vmlet's own
 *   `vmlet.io/network-binding` (bridge or masquerade: the binding of that network's interface).
 * Multus finds networks as NetworkAttachmentDefinitions in the API server; vmlet has none and finds
 * them as conflists by `name` in --cni-conf-dir, which are node-wide: a namespace other than the
 * pod's own cannot be told apart there and is refused rather than ignored. Pure.
 */
import { parseJsonBounded } from '../../documents/bounded.js';
import { InvalidArgumentError } from '../../errors.js';
import { POD_IFNAME } from '../names.js';
import { NETWORK_BINDING_ANNOTATION, NETWORK_BINDING_VALUES } from '../bindings/masquerade_plan.js';
import { isValidNetworkName } from './config.js';
import { parseCidr } from './ip.js';

export const CNI_GENIE_ANNOTATION = 'cni';
export const MULTUS_NETWORKS_ANNOTATION = 'k8s.v1.cni.cncf.io/networks';
/** The key of the Multus-shaped status vmlet reports in PodSandboxStatus's verbose info. */
export const MULTUS_NETWORK_STATUS_KEY = 'k8s.v1.cni.cncf.io/network-status';

/** More networks than this in one pod is a mistake (each is a NIC, a bridge, a TAP). */
export const MAX_POD_NETWORKS = 16;
/** A network list annotation longer than this is refused unread. */
const MAX_ANNOTATION_BYTES = 64 * 1024;

/** One network the sandbox is attached to, in ADD order. */
export interface NetworkAttachmentPlan {
  /** The conflist's `name`; undefined: the default network (the first valid file in the conf dir). */
  network?: string;
  /** As the Multus annotation gave it (always the pod's own namespace when set). */
  namespace?: string;
  /** CNI_IFNAME. */
  ifName: string;
  /** Multus's `mac`: passed as the `mac` capability. */
  mac?: string;
  /** Multus's `ips`: passed as the `ips` capability. */
  ips?: string[];
  /** The pod's default network: its gateway is the VM's default route, its IPs the pod IPs. */
  isDefault: boolean;
  /**
   * The binding a Multus JSON element asked for its interface (`vmlet.io/network-binding`);
   * absent: the default (bridge, the tap binding). The default network's is the pod annotation's.
   */
  binding?: NetworkBindingName;
}

/** The key of a Multus JSON element that picks the binding of its interface: the pod annotation's name, and its values. */
export const ELEMENT_BINDING_KEY = NETWORK_BINDING_ANNOTATION;
export type NetworkBindingName = (typeof NETWORK_BINDING_VALUES)[number];

const SHORT_ELEMENT = /^(?:([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/)?([^/@]+)(?:@(.+))?$/;
const NAMESPACE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const MULTUS_KEYS = new Set(['name', 'namespace', 'interface', 'mac', 'ips', ELEMENT_BINDING_KEY]);

function refuse(annotation: string, why: string): never {
  throw new InvalidArgumentError(`annotation ${annotation}: ${why}`);
}

function checkNetworkName(annotation: string, name: unknown): string {
  if (!isValidNetworkName(name)) refuse(annotation, `${JSON.stringify(name)} is not a network name (letters, digits, "_", ".", "-")`);
  return name;
}

function checkIfName(annotation: string, ifName: unknown): string {
  if (typeof ifName !== 'string' || !IFNAME.test(ifName) || ifName === '.' || ifName === '..') {
    refuse(annotation, `${JSON.stringify(ifName)} is not an interface name (1-15 of letters, digits, "_", ".", "-")`);
  }
  return ifName;
}

function checkNamespace(annotation: string, namespace: unknown, podNamespace: string): string {
  if (typeof namespace !== 'string' || !NAMESPACE.test(namespace) || namespace.length > 63) refuse(annotation, `${JSON.stringify(namespace)} is not a namespace`);
  if (namespace !== podNamespace) {
    refuse(annotation, `network namespace ${namespace} is not the pod's (${podNamespace}): vmlet finds networks as node-wide conflists by name, not per namespace`);
  }
  return namespace;
}

/** CNI-Genie's list: conflist names, comma separated, each ADDed as eth<i>. */
function parseCniGenie(text: string): NetworkAttachmentPlan[] {
  const names = text.split(',').map((n) => n.trim());
  if (names.some((n) => n === '')) refuse(CNI_GENIE_ANNOTATION, `${JSON.stringify(text)} has an empty network name`);
  return names.map((name, i) => ({ network: checkNetworkName(CNI_GENIE_ANNOTATION, name), ifName: `eth${i}`, isDefault: i === 0 }));
}

function parseMultusElement(raw: unknown, i: number, podNamespace: string): Omit<NetworkAttachmentPlan, 'ifName' | 'isDefault'> & { ifName?: string } {
  const where = `${MULTUS_NETWORKS_ANNOTATION}[${i}]`;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) refuse(where, 'is not a JSON object');
  const element = raw as Record<string, unknown>;
  const unknown = Object.keys(element).filter((k) => !MULTUS_KEYS.has(k));
  if (unknown.length > 0) {
    refuse(where, `${unknown.map((k) => JSON.stringify(k)).join(', ')} not supported (vmlet reads name, namespace, interface, mac, ips, ${ELEMENT_BINDING_KEY})`);
  }
  const out: ReturnType<typeof parseMultusElement> = { network: checkNetworkName(where, element.name) };
  if (element.namespace !== undefined) out.namespace = checkNamespace(where, element.namespace, podNamespace);
  if (element.interface !== undefined) out.ifName = checkIfName(where, element.interface);
  if (element.mac !== undefined) {
    const mac = typeof element.mac === 'string' ? element.mac.toLowerCase() : undefined;
    if (mac === undefined || !MAC.test(mac)) refuse(where, `mac ${JSON.stringify(element.mac)} is not a MAC address`);
    if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) refuse(where, `mac ${mac} is a multicast address`);
    out.mac = mac;
  }
  if (element.ips !== undefined) {
    if (!Array.isArray(element.ips) || element.ips.length === 0 || element.ips.length > 8) refuse(where, 'ips must be a list of 1 to 8 addresses in CIDR form');
    out.ips = element.ips.map((ip) => {
      const cidr = typeof ip === 'string' ? parseCidr(ip) : undefined;
      if (!cidr) refuse(where, `ips: ${JSON.stringify(ip)} is not an address in CIDR form`);
      return `${cidr.address}/${cidr.prefixLength}`;
    });
  }
  const binding = element[ELEMENT_BINDING_KEY];
  if (binding !== undefined) {
    if (!(NETWORK_BINDING_VALUES as readonly unknown[]).includes(binding)) {
      refuse(where, `${ELEMENT_BINDING_KEY} ${JSON.stringify(binding)} is not one of ${NETWORK_BINDING_VALUES.join(', ')}`);
    }
    out.binding = binding as NetworkBindingName;
  }
  return out;
}

/** Multus's list: short form or JSON; eth0 is the default network, the named ones net1, net2, … */
function parseMultus(text: string, podNamespace: string): NetworkAttachmentPlan[] {
  const trimmed = text.trim();
  let elements: ReturnType<typeof parseMultusElement>[];
  if (trimmed.startsWith('[')) {
    const list = parseJsonBounded(trimmed, `annotation ${MULTUS_NETWORKS_ANNOTATION}`);
    if (!Array.isArray(list)) refuse(MULTUS_NETWORKS_ANNOTATION, 'is not a JSON list');
    if (list.length === 0) refuse(MULTUS_NETWORKS_ANNOTATION, 'names no network');
    if (list.length >= MAX_POD_NETWORKS) refuse(MULTUS_NETWORKS_ANNOTATION, `names more than ${MAX_POD_NETWORKS - 1} networks`);
    elements = list.map((raw, i) => parseMultusElement(raw, i, podNamespace));
  } else {
    const parts = trimmed.split(',').map((p) => p.trim());
    if (parts.some((p) => p === '')) refuse(MULTUS_NETWORKS_ANNOTATION, `${JSON.stringify(text)} has an empty element`);
    if (parts.length >= MAX_POD_NETWORKS) refuse(MULTUS_NETWORKS_ANNOTATION, `names more than ${MAX_POD_NETWORKS - 1} networks`);
    elements = parts.map((part) => {
      const m = SHORT_ELEMENT.exec(part);
      if (!m) refuse(MULTUS_NETWORKS_ANNOTATION, `${JSON.stringify(part)} is not [namespace/]name[@interface]`);
      return {
        network: checkNetworkName(MULTUS_NETWORKS_ANNOTATION, m[3]),
        ...(m[1] !== undefined ? { namespace: checkNamespace(MULTUS_NETWORKS_ANNOTATION, m[1], podNamespace) } : {}),
        ...(m[4] !== undefined ? { ifName: checkIfName(MULTUS_NETWORKS_ANNOTATION, m[4]) } : {}),
      };
    });
  }
  return [
    { ifName: POD_IFNAME, isDefault: true },
    ...elements.map((e, i) => ({ ...e, ifName: e.ifName ?? `net${i + 1}`, isDefault: false })),
  ];
}

/**
 * The networks of a pod, in ADD order, from its annotations (only the two above are read); a
 * pod without either gets the default network as eth0. Bad input is INVALID_ARGUMENT naming the
 * annotation.
 */
export function podNetworkPlan(annotations: Readonly<Record<string, string>>, podNamespace: string): NetworkAttachmentPlan[] {
  const genie = annotations[CNI_GENIE_ANNOTATION];
  const multus = annotations[MULTUS_NETWORKS_ANNOTATION];
  if (genie?.trim() && multus?.trim()) {
    throw new InvalidArgumentError(`annotations ${CNI_GENIE_ANNOTATION} and ${MULTUS_NETWORKS_ANNOTATION} both name networks; use one`);
  }
  for (const [key, text] of [[CNI_GENIE_ANNOTATION, genie], [MULTUS_NETWORKS_ANNOTATION, multus]] as const) {
    if (text !== undefined && Buffer.byteLength(text) > MAX_ANNOTATION_BYTES) refuse(key, `longer than ${MAX_ANNOTATION_BYTES} bytes`);
  }
  let plan: NetworkAttachmentPlan[];
  let source: string;
  if (genie !== undefined && genie.trim() !== '') {
    plan = parseCniGenie(genie);
    source = CNI_GENIE_ANNOTATION;
    if (plan.length > MAX_POD_NETWORKS) refuse(source, `names more than ${MAX_POD_NETWORKS} networks`);
  } else if (multus !== undefined && multus.trim() !== '') {
    plan = parseMultus(multus, podNamespace);
    source = MULTUS_NETWORKS_ANNOTATION;
  } else {
    return [{ ifName: POD_IFNAME, isDefault: true }];
  }
  const seen = new Set<string>();
  for (const a of plan) {
    if (seen.has(a.ifName)) refuse(source, `interface ${a.ifName} is named twice`);
    seen.add(a.ifName);
  }
  return plan;
}

/** The annotations netd reads (networks here, bandwidth in capabilities.ts): what serve passes it. */
export const NETWORK_ANNOTATIONS = [CNI_GENIE_ANNOTATION, MULTUS_NETWORKS_ANNOTATION] as const;
