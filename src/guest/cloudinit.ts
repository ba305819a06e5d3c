/**
 * Pure builders of the cloud-init documents a vmlet VM boots with, for both seed kinds:
 * - NoCloud (volume label `cidata`): `meta-data`, `user-data`, `network-config` (network config v1).
 * - Config drive (label `config-2`): `openstack/latest/meta_data.json`, `user_data`,
 *   `network_data.json` (OpenStack's format, which cloud-init converts itself).
 *
 * What goes in follows Virtlet's cloud-init data generation: meta-data is JSON (old cloud-init
 * such as CirrOS' reads it); user-data is generated defaults (ssh keys, /etc/cloud/environment
 * with the container's env) merged with VirtletCloudInitUserData — maps merged recursively, lists
 * appended, scalars replaced — or, with VirtletCloudInitUserDataOverwrite, top-level keys
 * replaced; VirtletCloudInitUserDataScript replaces user-data entirely. Network config describes
 * every NIC by MAC with its static addresses and routes, or DHCP with VirtletForceDHCPNetworkConfig.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { Document, isScalar, visit } from 'yaml';
import { InvalidArgumentError } from '../errors.js';
import type { IpConfig, VmInterface, VmNetwork } from '../network/types.js';
import { ANNOTATION, type VmAnnotations } from './annotations.js';
import { checkValueBounds } from '../documents/bounded.js';

/** The annotation fields cloud-init data depends on. */
export type CloudInitAnnotations = Pick<
  VmAnnotations,
  'sshKeys' | 'userData' | 'userDataOverwrite' | 'userDataScript' | 'metaData' | 'forceDhcpNetworkConfig'
>;

export interface ContainerEnvVar {
  name: string;
  value: string;
}

export interface CloudInitInput {
  /** Stable per VM; cloud-init treats a new instance-id as a first boot. */
  instanceId: string;
  /** The pod's hostname (RFC 1123). */
  hostname: string;
  annotations: CloudInitAnnotations;
  /** The container's environment, in CRI order. */
  env: readonly ContainerEnvVar[];
  network: VmNetwork;
  /**
   * Commands the guest runs first at every boot (cloud-init `bootcmd`, before user-data's own
   * bootcmd and before any other module): the volumes' mounts (src/container/volumes/plan.ts).
   * Lost only when VirtletCloudInitUserDataScript replaces user-data (the caller warns).
   */
  bootcmd?: readonly (readonly string[])[];
  /**
   * The pod's block volumes as VM disks (src/container/block_devices/): listed in meta-data as
   * `vmlet-block-devices` so a guest can map a container path to /dev/disk/by-id/virtio-<serial>.
   */
  blockDevices?: readonly GuestBlockDevice[];
}

export interface GuestBlockDevice {
  containerPath: string;
  serial: string;
  readOnly: boolean;
}

/** The meta-data key listing the block devices (NoCloud meta-data and config-drive meta_data.json). */
export const BLOCK_DEVICES_KEY = 'vmlet-block-devices';

function blockDeviceMeta(input: CloudInitInput): Record<string, unknown> {
  const devices = input.blockDevices ?? [];
  if (devices.length === 0) return {};
  return { [BLOCK_DEVICES_KEY]: devices.map((d) => ({ 'container-path': d.containerPath, serial: d.serial, 'by-id': `/dev/disk/by-id/virtio-${d.serial}`, 'read-only': d.readOnly })) };
}

export interface NoCloudDocuments {
  kind: 'nocloud';
  metaData: string;
  userData: string;
  networkConfig: string;
  /** Env var names left out of /etc/cloud/environment because a shell cannot assign them. */
  omittedEnv: string[];
}

export interface ConfigDriveDocuments {
  kind: 'configdrive';
  /** openstack/latest/meta_data.json */
  metaData: string;
  /** openstack/latest/user_data */
  userData: string;
  /** openstack/latest/network_data.json */
  networkData: string;
  omittedEnv: string[];
}

export type SeedDocuments = NoCloudDocuments | ConfigDriveDocuments;

/** Where the container's environment lands in the guest (Virtlet's path). */
export const ENVIRONMENT_FILE = '/etc/cloud/environment';

/** The seed of the given kind (normally VmAnnotations.cloudInitImageType). */
export function buildSeedDocuments(input: CloudInitInput, kind: 'nocloud' | 'configdrive'): SeedDocuments {
  return kind === 'nocloud' ? buildCloudInit(input) : buildConfigDrive(input);
}

/** NoCloud documents. */
export function buildCloudInit(input: CloudInitInput): NoCloudDocuments {
  validateIdentity(input);
  const user = buildUserData(input);
  const generated: Record<string, unknown> = {
    'instance-id': input.instanceId,
    'local-hostname': input.hostname,
    ...blockDeviceMeta(input),
  };
  if (input.annotations.sshKeys.length > 0) generated['public-keys'] = [...input.annotations.sshKeys];
  const metaData = applyOverride(generated, input.annotations.metaData, false);
  // Serialised output is bounded too (depth, cycles, size), whatever the caller built the annotations from.
  checkValueBounds(metaData, `annotation ${ANNOTATION.metaData}`);
  return {
    kind: 'nocloud',
    metaData: `${JSON.stringify(metaData, null, 2)}\n`,
    userData: user.text,
    networkConfig: toYaml(buildNetworkConfigV1(input.network, input.annotations.forceDhcpNetworkConfig)),
    omittedEnv: user.omittedEnv,
  };
}

/** OpenStack config-drive documents. */
export function buildConfigDrive(input: CloudInitInput): ConfigDriveDocuments {
  validateIdentity(input);
  const user = buildUserData(input);
  const generated: Record<string, unknown> = {
    uuid: input.instanceId,
    'instance-id': input.instanceId,
    hostname: input.hostname,
    'local-hostname': input.hostname,
    name: input.hostname,
    ...blockDeviceMeta(input),
  };
  if (input.annotations.sshKeys.length > 0) {
    const keys: Record<string, string> = {};
    input.annotations.sshKeys.forEach((key, i) => (keys[`key-${i}`] = key));
    generated['public_keys'] = keys;
  }
  const metaData = applyOverride(generated, input.annotations.metaData, false);
  // cloud-init takes instance-id from `uuid` and local-hostname from `hostname` on a config
  // drive, so an override of the NoCloud-style names must be repeated there (as Virtlet does).
  const override = input.annotations.metaData ?? {};
  if (hasOwn(override, 'instance-id') && !hasOwn(override, 'uuid')) setOwn(metaData, 'uuid', override['instance-id']);
  if (hasOwn(override, 'local-hostname') && !hasOwn(override, 'hostname')) {
    setOwn(metaData, 'hostname', override['local-hostname']);
  }
  checkValueBounds(metaData, `annotation ${ANNOTATION.metaData}`);
  return {
    kind: 'configdrive',
    metaData: `${JSON.stringify(metaData, null, 2)}\n`,
    userData: user.text,
    networkData: `${JSON.stringify(buildNetworkData(input.network, input.annotations.forceDhcpNetworkConfig), null, 2)}\n`,
    omittedEnv: user.omittedEnv,
  };
}

// ---------------------------------------------------------------------------------------------
// user-data

function buildUserData(input: CloudInitInput): { text: string; omittedEnv: string[] } {
  const env = environmentFile(input.env);
  const script = input.annotations.userDataScript;
  if (script !== undefined) return { text: script, omittedEnv: env.omitted };

  const generated: Record<string, unknown> = {};
  if (input.annotations.sshKeys.length > 0) generated['ssh_authorized_keys'] = [...input.annotations.sshKeys];
  // 0600: container env often carries Secret values.
  generated['write_files'] = [{ path: ENVIRONMENT_FILE, permissions: '0600', content: env.content }];
  const merged = applyOverride(generated, input.annotations.userData, input.annotations.userDataOverwrite);
  if (input.bootcmd !== undefined && input.bootcmd.length > 0) {
    // Ahead of whatever the annotations say, overwrite mode included: the mounts must exist first.
    const theirs: unknown = merged['bootcmd'];
    setOwn(merged, 'bootcmd', [...input.bootcmd.map((c) => [...c]), ...(Array.isArray(theirs) ? theirs : theirs === undefined ? [] : [theirs])]);
  }
  checkValueBounds(merged, `annotation ${ANNOTATION.userData}`);
  return { text: `#cloud-config\n${toYaml(merged)}`, omittedEnv: env.omitted };
}

/**
 * The env as POSIX-sh assignments (`NAME='value'`, `'` written as `'\''`), so the guest can
 * `set -a; . /etc/cloud/environment`. Names a shell cannot assign (Kubernetes allows e.g.
 * "my.var") are left out and reported.
 */
export function environmentFile(env: readonly ContainerEnvVar[]): { content: string; omitted: string[] } {
  const lines: string[] = [];
  const omitted: string[] = [];
  for (const { name, value } of env) {
    if (value.includes('\u0000')) throw new InvalidArgumentError(`env ${JSON.stringify(name)}: value contains a NUL character`);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      omitted.push(name);
      continue;
    }
    lines.push(`${name}='${value.replace(/'/g, `'\\''`)}'`);
  }
  return { content: lines.map((l) => `${l}\n`).join(''), omitted };
}

/**
 * `override` over `base`: with `replaceTopLevel`, each top-level key of `override` replaces the
 * generated one; otherwise maps merge recursively, lists append and scalars are replaced.
 */
function applyOverride(
  base: Record<string, unknown>,
  override: Record<string, unknown> | undefined,
  replaceTopLevel: boolean,
): Record<string, unknown> {
  if (override === undefined) return base;
  if (!replaceTopLevel) return mergeValues(base, override) as Record<string, unknown>;
  const result: Record<string, unknown> = {};
  for (const key of Object.keys(base)) setOwn(result, key, base[key]);
  for (const key of Object.keys(override)) setOwn(result, key, override[key]);
  return result;
}

/** The merge Virtlet documents for user-data: maps recursively, lists appended, scalars replaced. */
export function mergeValues(base: unknown, override: unknown): unknown {
  if (isPlainObject(base) && isPlainObject(override)) {
    const result: Record<string, unknown> = {};
    for (const key of Object.keys(base)) setOwn(result, key, base[key]);
    for (const key of Object.keys(override)) {
      setOwn(result, key, hasOwn(base, key) ? mergeValues(base[key], override[key]) : override[key]);
    }
    return result;
  }
  if (Array.isArray(base) && Array.isArray(override)) return [...base, ...override];
  return override;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype;
}

function hasOwn(o: object, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, key);
}

/** Assignment that also works for a key named "__proto__" (YAML input may carry one). */
function setOwn(o: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * YAML 1.1 output: cloud-init reads with PyYAML, and 1.1 quotes what PyYAML would misread.
 * MAC addresses are always quoted, as cloud-init's docs ask (some look like base-60 integers).
 */
function toYaml(value: unknown): string {
  const doc = new Document(value, { version: '1.1', aliasDuplicateObjects: false });
  visit(doc, {
    Pair(_, pair) {
      if (isScalar(pair.key) && pair.key.value === 'mac_address' && isScalar(pair.value)) pair.value.type = 'QUOTE_DOUBLE';
    },
  });
  return doc.toString({ lineWidth: 0 });
}

function validateIdentity(input: CloudInitInput): void {
  const id = input.instanceId;
  // eslint-disable-next-line no-control-regex
  if (id.length === 0 || id.length > 255 || /[\u0000-\u001f\u007f]/.test(id)) {
    throw new InvalidArgumentError(`invalid cloud-init instance id ${JSON.stringify(id)}`);
  }
  const host = input.hostname;
  const label = '[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
  if (host.length > 253 || !new RegExp(`^${label}(\\.${label})*$`).test(host)) {
    throw new InvalidArgumentError(`invalid hostname ${JSON.stringify(host)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// network

/** One address of one NIC with the gateway and routes that belong to it. */
interface PlannedSubnet {
  ip: IpConfig;
  /** Default gateway via this subnet (at most one per address family in the whole VM). */
  defaultGateway?: string;
  routes: Array<{ destination: Cidr; gateway: string }>;
}

interface PlannedInterface {
  iface: VmInterface;
  mac: string;
  subnets: PlannedSubnet[];
}

/**
 * Assigns routes to addresses. A route without a gateway uses the interface's gateway of that
 * family (the CNI meaning of an omitted `gw`); one that still has none is on-link, which neither
 * output format expresses reliably, so it is left out. Each non-default route goes to the address
 * whose subnet holds its gateway (else the first of its family). Only the first default route of
 * each family (in CNI interface order) is kept: a guest with two default gateways of one family
 * gets an unpredictable one.
 */
function planNetwork(network: VmNetwork): PlannedInterface[] {
  const defaultTaken = new Set<4 | 6>();
  const names = new Set<string>();
  return network.interfaces.map((iface) => {
    const mac = validateInterface(iface);
    if (names.has(iface.name)) throw new InvalidArgumentError(`interface ${iface.name}: duplicate name`);
    names.add(iface.name);
    const subnets: PlannedSubnet[] = iface.ips.map((ip) => ({ ip, routes: [] }));
    for (const route of iface.routes) {
      const destination = parseCidr(route.destination, `interface ${iface.name} route`);
      const family = destination.family;
      const candidates = subnets.filter((s) => s.ip.family === family);
      if (candidates.length === 0) continue;
      const gateway = route.gateway ?? candidates.find((s) => s.ip.gateway !== undefined)?.ip.gateway;
      if (gateway === undefined) continue;
      checkIp(gateway, family, `interface ${iface.name} route gateway`);
      const home = candidates.find((s) => contains(s.ip, gateway)) ?? candidates[0]!;
      if (destination.prefix === 0) {
        if (defaultTaken.has(family)) continue;
        defaultTaken.add(family);
        home.defaultGateway = gateway;
      } else {
        home.routes.push({ destination, gateway });
      }
    }
    return { iface, mac, subnets };
  });
}

/**
 * Whether the guest configures `iface` by DHCP. Only vmlet's responder serves DHCP, and only on
 * TAP NICs: an SR-IOV VF is on the wire, outside the pod netns, so it is always configured
 * statically (matched by its MAC), VirtletForceDHCPNetworkConfig or not.
 */
function usesDhcp(iface: VmInterface, forceDhcp: boolean): boolean {
  return forceDhcp && iface.binding.kind === 'tap';
}

/** cloud-init network config version 1 (the NoCloud `network-config` file, no `network:` key). */
export function buildNetworkConfigV1(network: VmNetwork, forceDhcp: boolean): Record<string, unknown> {
  const plan = planNetwork(network);
  const config: Array<Record<string, unknown>> = plan.map(({ iface, mac, subnets }) => {
    const entry: Record<string, unknown> = { type: 'physical', name: iface.name, mac_address: mac, mtu: iface.mtu };
    entry['subnets'] = usesDhcp(iface, forceDhcp) ? dhcpSubnetsV1(iface) : subnets.map(staticSubnetV1);
    return entry;
  });
  // DNS comes with the DHCP leases; a static NIC (a VF) gets it here.
  if (plan.some(({ iface }) => !usesDhcp(iface, forceDhcp))) {
    const dns = dnsEntry(network);
    if (dns) config.push(dns);
  }
  return { version: 1, config };
}

function dhcpSubnetsV1(iface: VmInterface): Array<Record<string, unknown>> {
  const has6 = iface.ips.some((ip) => ip.family === 6);
  const has4 = iface.ips.some((ip) => ip.family === 4) || !has6;
  const out: Array<Record<string, unknown>> = [];
  if (has4) out.push({ type: 'dhcp' });
  if (has6) out.push({ type: 'dhcp6' });
  return out;
}

function staticSubnetV1(s: PlannedSubnet): Record<string, unknown> {
  const subnet: Record<string, unknown> =
    s.ip.family === 4
      ? { type: 'static', address: s.ip.address, netmask: formatMask(4, s.ip.prefixLength) }
      : { type: 'static6', address: `${s.ip.address}/${s.ip.prefixLength}` };
  if (s.defaultGateway !== undefined) subnet['gateway'] = s.defaultGateway;
  if (s.routes.length > 0) {
    subnet['routes'] = s.routes.map((r) =>
      r.destination.family === 4
        ? { destination: r.destination.network, netmask: formatMask(4, r.destination.prefix), gateway: r.gateway }
        : { destination: `${r.destination.network}/${r.destination.prefix}`, gateway: r.gateway },
    );
  }
  return subnet;
}

function dnsEntry(network: VmNetwork): Record<string, unknown> | undefined {
  const dns = network.dns;
  for (const ns of dns.nameservers) {
    if (!isIPv4(ns) && !isIPv6(ns)) throw new InvalidArgumentError(`invalid DNS nameserver ${JSON.stringify(ns)}`);
  }
  // resolv.conf's `domain` is the first search entry; v1 has no separate key. Options have no
  // place in v1 at all.
  const search = [...(dns.domain !== undefined && !dns.search.includes(dns.domain) ? [dns.domain] : []), ...dns.search];
  for (const s of search) {
    if (!/^[A-Za-z0-9_.-]{1,253}$/.test(s)) throw new InvalidArgumentError(`invalid DNS search domain ${JSON.stringify(s)}`);
  }
  if (dns.nameservers.length === 0 && search.length === 0) return undefined;
  const entry: Record<string, unknown> = { type: 'nameserver', address: [...dns.nameservers] };
  if (search.length > 0) entry['search'] = search;
  return entry;
}

/** OpenStack network_data.json: links (NICs by MAC), networks (addresses, routes), services (DNS). */
export function buildNetworkData(network: VmNetwork, forceDhcp: boolean): Record<string, unknown> {
  const plan = planNetwork(network);
  const links = plan.map(({ iface, mac }) => ({
    id: iface.name,
    // cloud-init names the guest NIC after `name` when present.
    name: iface.name,
    type: iface.binding.kind === 'sriov' ? 'phy' : 'tap',
    ethernet_mac_address: mac,
    mtu: iface.mtu,
  }));
  const networks: Array<Record<string, unknown>> = [];
  for (const { iface, subnets } of plan) {
    if (usesDhcp(iface, forceDhcp)) {
      for (const s of dhcpSubnetsV1(iface)) {
        const type = s['type'] === 'dhcp6' ? 'ipv6_dhcp' : 'ipv4_dhcp';
        networks.push({ id: `network${networks.length}`, link: iface.name, network_id: `${iface.name}-${type}`, type });
      }
      continue;
    }
    subnets.forEach((s, i) => {
      const family = s.ip.family;
      const routes = s.routes.map((r) => ({
        network: r.destination.network,
        netmask: formatMask(family, r.destination.prefix),
        gateway: r.gateway,
      }));
      if (s.defaultGateway !== undefined) {
        routes.unshift({ network: family === 4 ? '0.0.0.0' : '::', netmask: formatMask(family, 0), gateway: s.defaultGateway });
      }
      networks.push({
        id: `network${networks.length}`,
        link: iface.name,
        network_id: `${iface.name}-ipv${family}-${i}`,
        type: family === 4 ? 'ipv4' : 'ipv6',
        ip_address: s.ip.address,
        netmask: formatMask(family, s.ip.prefixLength),
        routes,
      });
    });
  }
  // network_data.json has DNS servers but no search domains.
  const anyStatic = plan.some(({ iface }) => !usesDhcp(iface, forceDhcp));
  const nameservers = anyStatic ? ((dnsEntry(network)?.['address'] as string[] | undefined) ?? []) : [];
  const services = nameservers.map((address) => ({ type: 'dns', address }));
  return { links, networks, services };
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** Returns the lower-case MAC (cloud-init wants lower case) after checking the interface. */
function validateInterface(iface: VmInterface): string {
  if (!/^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,15}$/.test(iface.name)) {
    throw new InvalidArgumentError(`invalid interface name ${JSON.stringify(iface.name)}`);
  }
  const mac = iface.mac.toLowerCase();
  if (!MAC.test(mac)) throw new InvalidArgumentError(`interface ${iface.name}: invalid MAC ${JSON.stringify(iface.mac)}`);
  if (!Number.isInteger(iface.mtu) || iface.mtu < 68 || iface.mtu > 65535) {
    throw new InvalidArgumentError(`interface ${iface.name}: invalid MTU ${iface.mtu}`);
  }
  for (const ip of iface.ips) {
    checkIp(ip.address, ip.family, `interface ${iface.name} address`);
    const max = ip.family === 4 ? 32 : 128;
    if (!Number.isInteger(ip.prefixLength) || ip.prefixLength < 0 || ip.prefixLength > max) {
      throw new InvalidArgumentError(`interface ${iface.name}: invalid prefix length ${ip.prefixLength}`);
    }
    if (ip.gateway !== undefined) checkIp(ip.gateway, ip.family, `interface ${iface.name} gateway`);
  }
  return mac;
}

function checkIp(address: string, family: 4 | 6, what: string): void {
  const ok = family === 4 ? isIPv4(address) : isIPv6(address) && !address.includes('%');
  if (!ok) throw new InvalidArgumentError(`${what}: invalid IPv${family} address ${JSON.stringify(address)}`);
}

// ---------------------------------------------------------------------------------------------
// IP arithmetic (just enough for masks and subnet membership)

interface Cidr {
  family: 4 | 6;
  /** Network address with host bits cleared, in canonical text. */
  network: string;
  prefix: number;
}

function parseCidr(text: string, what: string): Cidr {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? '' : text.slice(0, slash);
  const prefixText = slash < 0 ? '' : text.slice(slash + 1);
  const family = isIPv4(addr) ? 4 : isIPv6(addr) && !addr.includes('%') ? 6 : undefined;
  const bits = family === 4 ? 32 : 128;
  const prefix = /^[0-9]{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (family === undefined || !(prefix >= 0 && prefix <= bits)) {
    throw new InvalidArgumentError(`${what}: invalid CIDR ${JSON.stringify(text)}`);
  }
  const value = ipToBigInt(addr, family) & maskBits(family, prefix);
  return { family, network: bigIntToIp(value, family), prefix };
}

function contains(ip: IpConfig, address: string): boolean {
  const mask = maskBits(ip.family, ip.prefixLength);
  return (ipToBigInt(ip.address, ip.family) & mask) === (ipToBigInt(address, ip.family) & mask);
}

function maskBits(family: 4 | 6, prefix: number): bigint {
  const bits = family === 4 ? 32n : 128n;
  const all = (1n << bits) - 1n;
  return (all << (bits - BigInt(prefix))) & all;
}

/** Dotted netmask for IPv4, canonical IPv6 text for IPv6 (e.g. "ffff:ffff:ffff:ffff::"). */
function formatMask(family: 4 | 6, prefix: number): string {
  return bigIntToIp(maskBits(family, prefix), family);
}

function ipToBigInt(address: string, family: 4 | 6): bigint {
  if (family === 4) return address.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
  let text = address;
  const groups: number[] = [];
  // An embedded IPv4 tail ("::ffff:1.2.3.4") becomes two 16-bit groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const n = Number(ipToBigInt(v4[1]!, 4));
    text = `${text.slice(0, -v4[1]!.length)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  for (const g of headGroups) groups.push(parseInt(g, 16));
  for (let i = 0; i < fill; i++) groups.push(0);
  for (const g of tailGroups) groups.push(parseInt(g, 16));
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

function bigIntToIp(value: bigint, family: 4 | 6): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 255n)).join('.');
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  // RFC 5952: compress the longest run (length ≥ 2) of zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}
