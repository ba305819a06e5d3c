/**
 * CNI results (spec 0.3.0 … 1.1.0) parsed into one validated model, and the model turned into the
 * per-interface view the VM side needs. Pure: no I/O.
 */
import { CniResultError } from './errors.js';
import { cidrContains, parseCidr, parseIp, type ParsedCidr } from './ip.js';
import { isSupportedVersion, type CniVersion } from './version.js';
import type { DnsConfig, IpConfig, RouteConfig } from '../types.js';

export interface CniInterface {
  name: string;
  /** Lower-cased; absent where L2 addresses mean nothing (the spec makes it optional). */
  mac?: string;
  mtu?: number;
  /** Netns path (or hypervisor id) for interfaces inside the sandbox; absent for host-side ones. */
  sandbox?: string;
  /** 1.1.0: vhost-user style socket of the interface. */
  socketPath?: string;
  /** 1.1.0: PCI address of a device handed to the sandbox. */
  pciID?: string;
}

export interface CniIp {
  /** Address with prefix, host bits kept, e.g. "198.18.0.5/24". */
  address: string;
  gateway?: string;
  /** Index into `interfaces` of the interface this address is on. */
  interfaceIndex?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
  /** 1.1.0 route attributes. */
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface CniDns {
  nameservers: string[];
  domain?: string;
  search: string[];
  options: string[];
}

export interface CniResult {
  cniVersion: CniVersion;
  interfaces: CniInterface[];
  ips: CniIp[];
  routes: CniRoute[];
  dns: CniDns;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$|^[0-9a-f]{2}(:[0-9a-f]{2}){19}$/;
const DNS_NAME = /^(?=.{1,253}\.?$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i;
const RESOLVER_OPTION = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
/** Linux interface names: 1-15 bytes, no "/", ":" or whitespace, not "." or "..". */
const IFNAME = /^[^\s/:]{1,15}$/;
/** The kernel's main routing table: a route there is an ordinary route. */
const MAIN_TABLE = 254;
/** RT_SCOPE_LINK: a route to a destination reachable directly on the link. */
const LINK_SCOPE = 253;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function optionalString(obj: Record<string, unknown>, key: string, path: string): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new CniResultError(`${path}.${key}`, 'must be a string');
  return v;
}

function optionalInt(obj: Record<string, unknown>, key: string, path: string, min: number, max: number): number | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new CniResultError(`${path}.${key}`, `must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function list(obj: Record<string, unknown>, key: string, path: string): unknown[] {
  const v = obj[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new CniResultError(`${path}${key}`, 'must be a list');
  return v;
}

function parseInterface(raw: unknown, path: string): CniInterface {
  if (!isObject(raw)) throw new CniResultError(path, 'must be an object');
  const name = raw.name;
  if (typeof name !== 'string' || !IFNAME.test(name) || name === '.' || name === '..') {
    throw new CniResultError(`${path}.name`, `${JSON.stringify(name)} is not an interface name`);
  }
  const out: CniInterface = { name };
  const mac = optionalString(raw, 'mac', path)?.toLowerCase();
  if (mac !== undefined) {
    if (!MAC.test(mac)) throw new CniResultError(`${path}.mac`, `${JSON.stringify(mac)} is not a MAC address`);
    out.mac = mac;
  }
  // Go's omitempty never writes mtu 0, so 0 reads as "not given".
  const mtu = optionalInt(raw, 'mtu', path, 0, 65535);
  if (mtu) out.mtu = mtu;
  const sandbox = optionalString(raw, 'sandbox', path);
  if (sandbox !== undefined) out.sandbox = sandbox;
  const socketPath = optionalString(raw, 'socketPath', path);
  if (socketPath !== undefined) out.socketPath = socketPath;
  const pciID = optionalString(raw, 'pciID', path);
  if (pciID !== undefined) out.pciID = pciID;
  return out;
}

function parseIpConfig(raw: unknown, path: string, interfaceCount: number): CniIp {
  if (!isObject(raw)) throw new CniResultError(path, 'must be an object');
  const address = raw.address;
  const cidr = typeof address === 'string' ? parseCidr(address) : undefined;
  if (!cidr) throw new CniResultError(`${path}.address`, `${JSON.stringify(address)} is not an address in CIDR form`);
  const out: CniIp = { address: `${cidr.address}/${cidr.prefixLength}` };
  // 0.3.x results carry "version": "4" | "6"; it must agree with the address.
  if (raw.version !== undefined) {
    if (raw.version !== '4' && raw.version !== '6') {
      throw new CniResultError(`${path}.version`, `must be "4" or "6", got ${JSON.stringify(raw.version)}`);
    }
    if (Number(raw.version) !== cidr.family) {
      throw new CniResultError(`${path}.version`, `says IPv${raw.version} but the address is IPv${cidr.family}`);
    }
  }
  const gateway = optionalString(raw, 'gateway', path);
  if (gateway !== undefined) {
    const gw = parseIp(gateway);
    if (!gw) throw new CniResultError(`${path}.gateway`, `${JSON.stringify(gateway)} is not an IP address`);
    if (gw.family !== cidr.family) throw new CniResultError(`${path}.gateway`, 'is not in the address family of the address');
    out.gateway = gateway.toLowerCase();
  }
  const index = raw.interface;
  if (index !== undefined && index !== null) {
    if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= interfaceCount) {
      throw new CniResultError(
        `${path}.interface`,
        `${JSON.stringify(index)} does not index one of the ${interfaceCount} interfaces`,
      );
    }
    out.interfaceIndex = index;
  }
  return out;
}

function parseRoute(raw: unknown, path: string): CniRoute {
  if (!isObject(raw)) throw new CniResultError(path, 'must be an object');
  const dst = typeof raw.dst === 'string' ? parseCidr(raw.dst) : undefined;
  if (!dst) throw new CniResultError(`${path}.dst`, `${JSON.stringify(raw.dst)} is not a destination in CIDR form`);
  const out: CniRoute = { dst: `${dst.address}/${dst.prefixLength}` };
  const gwText = optionalString(raw, 'gw', path);
  if (gwText !== undefined) {
    const gw = parseIp(gwText);
    if (!gw) throw new CniResultError(`${path}.gw`, `${JSON.stringify(gwText)} is not an IP address`);
    if (gw.family !== dst.family) throw new CniResultError(`${path}.gw`, 'is not in the address family of dst');
    out.gw = gwText.toLowerCase();
  }
  const mtu = optionalInt(raw, 'mtu', path, 0, 65535);
  if (mtu) out.mtu = mtu;
  const advmss = optionalInt(raw, 'advmss', path, 0, 65535);
  if (advmss) out.advmss = advmss;
  const priority = optionalInt(raw, 'priority', path, 0, 0xffffffff);
  if (priority !== undefined) out.priority = priority;
  const table = optionalInt(raw, 'table', path, 0, 0xffffffff);
  if (table !== undefined) out.table = table;
  const scope = optionalInt(raw, 'scope', path, 0, 255);
  if (scope !== undefined) out.scope = scope;
  return out;
}

function stringList(obj: Record<string, unknown>, key: string, path: string, check: (s: string) => boolean, what: string): string[] {
  return list(obj, key, `${path}.`).map((v, i) => {
    if (typeof v !== 'string' || !check(v)) throw new CniResultError(`${path}.${key}[${i}]`, `${JSON.stringify(v)} is not ${what}`);
    return v;
  });
}

function parseDns(raw: unknown): CniDns {
  if (raw === undefined || raw === null) return { nameservers: [], search: [], options: [] };
  if (!isObject(raw)) throw new CniResultError('dns', 'must be an object');
  const dns: CniDns = {
    nameservers: stringList(raw, 'nameservers', 'dns', (s) => parseIp(s) !== undefined, 'an IP address'),
    search: stringList(raw, 'search', 'dns', (s) => DNS_NAME.test(s), 'a domain name'),
    options: stringList(raw, 'options', 'dns', (s) => RESOLVER_OPTION.test(s), 'a resolver option'),
  };
  const domain = optionalString(raw, 'domain', 'dns');
  if (domain !== undefined) {
    if (!DNS_NAME.test(domain)) throw new CniResultError('dns.domain', `${JSON.stringify(domain)} is not a domain name`);
    dns.domain = domain;
  }
  return dns;
}

/** Validates a decoded CNI result of any supported version and returns the version-neutral model. */
export function parseCniResult(raw: unknown): CniResult {
  if (!isObject(raw)) throw new CniResultError('(result)', 'must be a JSON object');
  if (!isSupportedVersion(raw.cniVersion)) {
    throw new CniResultError('cniVersion', `${JSON.stringify(raw.cniVersion)} is not a supported CNI version`);
  }
  const interfaces = list(raw, 'interfaces', '').map((v, i) => parseInterface(v, `interfaces[${i}]`));
  const ips = list(raw, 'ips', '').map((v, i) => parseIpConfig(v, `ips[${i}]`, interfaces.length));
  const routes = list(raw, 'routes', '').map((v, i) => parseRoute(v, `routes[${i}]`));
  return { cniVersion: raw.cniVersion, interfaces, ips, routes, dns: parseDns(raw.dns) };
}

/** Parses a result from a plugin's stdout text. */
export function parseCniResultText(text: string): CniResult {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CniResultError('(result)', `not valid JSON: ${(err as Error).message}`);
  }
  return parseCniResult(raw);
}

/** One interface inside the sandbox, with the addresses and routes that belong to it. */
export interface SandboxInterfaceView {
  /** Position of the interface in the CNI result's `interfaces`. */
  resultIndex: number;
  name: string;
  mac: string;
  /** Only when the result says; the caller reads the link's MTU otherwise. */
  mtu?: number;
  sandbox: string;
  ips: IpConfig[];
  routes: RouteConfig[];
}

export interface VmNetworkView {
  /** Sandbox interfaces in result order (host-side interfaces are left out). */
  interfaces: SandboxInterfaceView[];
  dns: DnsConfig;
  /** What could not be tied to exactly one sandbox interface, or has no VM-side equivalent. */
  unassigned: { ips: CniIp[]; routes: CniRoute[] };
}

export interface ViewOptions {
  /** CNI_IFNAME of the ADD: where gateway-less routes and unindexed IPs go when in doubt, like IPAM does. */
  ifName?: string;
}

function toIpConfig(ip: CniIp): IpConfig {
  const cidr = parseCidr(ip.address)!;
  const out: IpConfig = { family: cidr.family, address: cidr.address, prefixLength: cidr.prefixLength };
  if (ip.gateway !== undefined) out.gateway = ip.gateway;
  return out;
}

/**
 * Ties the result's IPs and routes to its sandbox interfaces:
 * - an IP goes to the interface it indexes; an unindexed IP to the only sandbox interface, or to `ifName`;
 * - a route with `gw` goes to the interface whose subnet holds the gateway; one without, to `ifName`
 *   or the only sandbox interface with an address of that family, and takes that address's gateway
 *   (as the plugins' IPAM code programs it), unless it is link-scoped;
 * - routes in a table other than main have no place in a VM's single table and stay unassigned.
 * A sandbox interface without a MAC cannot become a VM NIC and is an error.
 */
export function toVmNetworkView(result: CniResult, opts: ViewOptions = {}): VmNetworkView {
  const views: SandboxInterfaceView[] = [];
  const byResultIndex = new Map<number, SandboxInterfaceView>();
  result.interfaces.forEach((iface, i) => {
    if (iface.sandbox === undefined) return;
    if (iface.mac === undefined) throw new CniResultError(`interfaces[${i}].mac`, `sandbox interface ${iface.name} has no MAC`);
    const view: SandboxInterfaceView = {
      resultIndex: i,
      name: iface.name,
      mac: iface.mac,
      ...(iface.mtu !== undefined ? { mtu: iface.mtu } : {}),
      sandbox: iface.sandbox,
      ips: [],
      routes: [],
    };
    views.push(view);
    byResultIndex.set(i, view);
  });
  const preferred = views.find((v) => v.name === opts.ifName) ?? (views.length === 1 ? views[0] : undefined);
  const unassigned: VmNetworkView['unassigned'] = { ips: [], routes: [] };
  const prefixes: { view: SandboxInterfaceView; cidr: ParsedCidr; gateway?: string }[] = [];

  for (const ip of result.ips) {
    const target = ip.interfaceIndex !== undefined ? byResultIndex.get(ip.interfaceIndex) : preferred;
    if (!target) {
      unassigned.ips.push(ip);
      continue;
    }
    target.ips.push(toIpConfig(ip));
    prefixes.push({ view: target, cidr: parseCidr(ip.address)!, gateway: ip.gateway });
  }

  for (const route of result.routes) {
    const dst = parseCidr(route.dst)!;
    if (route.table !== undefined && route.table !== MAIN_TABLE) {
      unassigned.routes.push(route);
      continue;
    }
    let target: SandboxInterfaceView | undefined;
    let gateway = route.gw;
    if (route.gw !== undefined) {
      const gw = parseIp(route.gw)!;
      target = prefixes.find((p) => cidrContains(p.cidr, gw))?.view ?? preferred;
    } else {
      const sameFamily = prefixes.filter((p) => p.cidr.family === dst.family);
      const owners = [...new Set(sameFamily.map((p) => p.view))];
      target = preferred && owners.includes(preferred) ? preferred : owners.length === 1 ? owners[0] : preferred;
      // A link-scope route is on-link by definition; others go via the interface's gateway.
      if (route.scope !== LINK_SCOPE) {
        gateway = sameFamily.find((p) => p.view === target && p.gateway !== undefined)?.gateway;
      }
    }
    if (!target) {
      unassigned.routes.push(route);
      continue;
    }
    const out: RouteConfig = { destination: route.dst };
    if (gateway !== undefined) out.gateway = gateway;
    target.routes.push(out);
  }

  const dns: DnsConfig = { nameservers: result.dns.nameservers, search: result.dns.search, options: result.dns.options };
  if (result.dns.domain !== undefined) dns.domain = result.dns.domain;
  return { interfaces: views, dns, unassigned };
}
