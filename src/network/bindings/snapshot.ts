/**
 * What an interface inside a pod netns looks like right now (link, addresses, routes), read with one
 * `ip -j` process, and the iproute2 commands that put recorded addresses and routes back.
 * Bindings record this before they change anything, so undoing restores exactly what CNI left.
 * Everything here except `readInterfaceSnapshot` is pure.
 */
import { isIP } from 'node:net';
import { FailedPreconditionError, InternalError, NotFoundError } from '../../errors.js';
import type { IpCommand, IpRunner } from '../iproute.js';
import { assertInterfaceName, normalizeMac } from '../names.js';

export interface LinkState {
  name: string;
  /** Index in its namespace (the same index can exist in another namespace). */
  ifindex?: number;
  /** rtnetlink kind (veth, bridge, tun, …); absent for plain devices. */
  kind?: string;
  mac?: string;
  mtu: number;
  /** Administratively up. */
  up: boolean;
  /** Bridge (or bond) this link is a port of. */
  master?: string;
  /** Link group ("default" is 0). */
  group: number;
  /** IPv6 link-local address generation mode (eui64, none, stable_secret, random). */
  addrGenMode?: string;
  /** The bus and device the link sits on, e.g. "pci" and "0000:3b:02.1" for a VF. */
  parentBus?: string;
  parentDev?: string;
}

/** Address flags that were set on purpose and must come back with the address. */
const KEPT_ADDRESS_FLAGS = ['nodad', 'noprefixroute', 'home', 'mngtmpaddr'] as const;
type AddressFlag = (typeof KEPT_ADDRESS_FLAGS)[number];

export interface RecordedAddress {
  family: 4 | 6;
  local: string;
  prefixLength: number;
  /** Point-to-point peer; the prefix length then belongs to it. */
  peer?: string;
  broadcast?: string;
  scope: string;
  /** IPv4 label when it differs from the device name (eth0:1). */
  label?: string;
  flags: AddressFlag[];
}

/** Route metrics iproute2 can set back with a plain number. */
const KEPT_ROUTE_METRICS = ['mtu', 'advmss', 'hoplimit', 'initcwnd', 'initrwnd', 'window', 'reordering'] as const;

export interface RecordedRoute {
  family: 4 | 6;
  /** Always a CIDR: "default" becomes 0.0.0.0/0 or ::/0, host routes get /32 or /128. */
  dst: string;
  type: string;
  gateway?: string;
  table: string;
  protocol?: string;
  scope?: string;
  metric?: number;
  prefsrc?: string;
  onlink: boolean;
  /** IPv6 router preference when not the default "medium". */
  pref?: string;
  metrics: Partial<Record<(typeof KEPT_ROUTE_METRICS)[number], number>>;
}

export interface InterfaceSnapshot {
  /** Every link in the netns, so callers can see what else is there (a half-built bridge, …). */
  links: LinkState[];
  /** The interface the snapshot is about. */
  link: LinkState;
  addresses: RecordedAddress[];
  /** Routes through the interface that someone configured; kernel-made ones are left out. */
  routes: RecordedRoute[];
}

/** Route origins the kernel itself maintains: they come back (or not) with addresses and links. */
const KERNEL_PROTOCOLS = new Set(['kernel', 'ra', 'redirect']);
/** Keywords and names iproute2 prints for tables, protocols, scopes, types and modes. */
const WORD = /^[A-Za-z0-9_.-]{1,32}$/;
/** IPv4 address labels: the device name, optionally ":" and a suffix, 15 characters at most. */
const ADDRESS_LABEL = /^[A-Za-z0-9_.@+:-]{1,15}$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function bad(what: string, value: unknown): never {
  throw new InternalError(`ip printed an unexpected ${what}: ${JSON.stringify(value)?.slice(0, 200)}`);
}

function word(value: unknown, what: string): string {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return String(value);
  if (typeof value !== 'string' || !WORD.test(value)) bad(what, value);
  return value;
}

function address(value: unknown, family: 4 | 6, what: string): string {
  if (typeof value !== 'string' || isIP(value) !== family) bad(what, value);
  return value.toLowerCase();
}

function uint(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffffffff) bad(what, value);
  return value;
}

export function parseLinks(json: unknown): LinkState[] {
  if (!Array.isArray(json)) bad('link list', json);
  return json.map((raw) => {
    if (!isRecord(raw) || typeof raw.ifname !== 'string') bad('link', raw);
    const flags = Array.isArray(raw.flags) ? raw.flags : [];
    const group = raw.group === undefined || raw.group === 'default' ? 0 : uint(Number(raw.group), 'link group');
    const link: LinkState = { name: raw.ifname, mtu: uint(raw.mtu, 'MTU'), up: flags.includes('UP'), group };
    if (typeof raw.ifindex === 'number') link.ifindex = uint(raw.ifindex, 'ifindex');
    if (isRecord(raw.linkinfo) && typeof raw.linkinfo.info_kind === 'string') link.kind = raw.linkinfo.info_kind;
    if (raw.link_type === 'ether' && typeof raw.address === 'string') link.mac = normalizeMac(raw.address);
    if (typeof raw.master === 'string') link.master = raw.master;
    if (typeof raw.inet6_addr_gen_mode === 'string') link.addrGenMode = word(raw.inet6_addr_gen_mode, 'addrgenmode');
    if (typeof raw.parentbus === 'string') link.parentBus = raw.parentbus;
    if (typeof raw.parentdev === 'string') link.parentDev = raw.parentdev;
    return link;
  });
}

/** Addresses of the single device in an `ip -j addr show dev X` listing. */
export function parseAddresses(json: unknown): RecordedAddress[] {
  if (!Array.isArray(json) || json.length !== 1 || !isRecord(json[0])) bad('address listing', json);
  const dev = json[0];
  // Always printed for an address listing (empty when there are none); missing means ip listed
  // links instead, which is what a batch does after a `link show` line (see snapshotCommands).
  if (!Array.isArray(dev.addr_info)) bad('address listing without addr_info', dev.ifname);
  const infos = dev.addr_info;
  const out: RecordedAddress[] = [];
  for (const info of infos) {
    if (!isRecord(info)) bad('address', info);
    // Addresses with a finite lifetime came from SLAAC/DHCPv6 on the wire, not from CNI.
    if (info.dynamic === true) continue;
    const family = info.family === 'inet' ? 4 : info.family === 'inet6' ? 6 : bad('address family', info.family);
    const rec: RecordedAddress = {
      family,
      local: address(info.local, family, 'address'),
      prefixLength: uint(info.prefixlen, 'prefix length'),
      scope: word(info.scope, 'scope'),
      flags: KEPT_ADDRESS_FLAGS.filter((flag) => info[flag] === true),
    };
    if (info.address !== undefined) rec.peer = address(info.address, family, 'peer address');
    if (info.broadcast !== undefined) rec.broadcast = address(info.broadcast, 4, 'broadcast address');
    if (typeof info.label === 'string' && info.label !== dev.ifname) {
      if (!ADDRESS_LABEL.test(info.label)) bad('address label', info.label);
      rec.label = info.label;
    }
    out.push(rec);
  }
  return out;
}

function routeDst(raw: unknown, family: 4 | 6): string {
  if (raw === 'default') return family === 4 ? '0.0.0.0/0' : '::/0';
  if (typeof raw !== 'string') bad('route destination', raw);
  const [addr, len, ...rest] = raw.split('/');
  if (rest.length > 0) bad('route destination', raw);
  const base = address(addr, family, 'route destination');
  const max = family === 4 ? 32 : 128;
  const prefix = len === undefined ? max : Number(len);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (len !== undefined && !/^\d+$/.test(len))) {
    bad('route destination', raw);
  }
  return `${base}/${prefix}`;
}

/** The configured routes of one family from an `ip -j route show … root 0.0.0.0/0` (or ::/0) listing. */
export function parseRoutes(json: unknown, family: 4 | 6): RecordedRoute[] {
  if (!Array.isArray(json)) bad('route listing', json);
  const out: RecordedRoute[] = [];
  for (const raw of json) {
    if (!isRecord(raw)) bad('route', raw);
    const protocol = raw.protocol === undefined ? undefined : word(raw.protocol, 'route protocol');
    if (protocol !== undefined && KERNEL_PROTOCOLS.has(protocol)) continue;
    if (raw.nexthops !== undefined || raw.nhid !== undefined) {
      throw new FailedPreconditionError(
        `route ${JSON.stringify(raw.dst)} uses multipath or nexthop objects, which cannot be recorded and restored`,
      );
    }
    const flags = Array.isArray(raw.flags) ? raw.flags : [];
    const route: RecordedRoute = {
      family,
      dst: routeDst(raw.dst, family),
      type: raw.type === undefined ? 'unicast' : word(raw.type, 'route type'),
      table: raw.table === undefined ? 'main' : word(raw.table, 'route table'),
      onlink: flags.includes('onlink'),
      metrics: {},
    };
    if (protocol !== undefined) route.protocol = protocol;
    if (raw.gateway !== undefined) {
      const gwFamily = isIP(String(raw.gateway));
      route.gateway = address(raw.gateway, gwFamily === 6 ? 6 : 4, 'gateway');
    }
    if (raw.scope !== undefined) route.scope = word(raw.scope, 'route scope');
    if (raw.metric !== undefined) route.metric = uint(raw.metric, 'route metric');
    if (raw.prefsrc !== undefined) route.prefsrc = address(raw.prefsrc, family, 'route source');
    if (raw.pref !== undefined && raw.pref !== 'medium') route.pref = word(raw.pref, 'route preference');
    for (const group of Array.isArray(raw.metrics) ? raw.metrics : []) {
      if (!isRecord(group)) bad('route metrics', group);
      for (const [key, value] of Object.entries(group)) {
        if (!(KEPT_ROUTE_METRICS as readonly string[]).includes(key) || typeof value !== 'number') {
          throw new FailedPreconditionError(`route ${route.dst} has metric ${key}=${JSON.stringify(value)}, which cannot be restored`);
        }
        route.metrics[key as (typeof KEPT_ROUTE_METRICS)[number]] = uint(value, `route ${key}`);
      }
    }
    out.push(route);
  }
  return out;
}

/**
 * The show commands `readInterfaceSnapshot` runs, in the order `parseSnapshot` expects. `link show`
 * must come last: it switches iproute2's family to AF_PACKET for the rest of the batch, and an
 * `address show` after it prints no addresses. The "root" prefixes pick one family per listing
 * (plain `route show` does not say which family a "default" route is).
 */
export function snapshotCommands(ifname: string): IpCommand[] {
  assertInterfaceName(ifname);
  return [
    ['address', 'show', 'dev', ifname],
    ['route', 'show', 'table', 'all', 'dev', ifname, 'root', '0.0.0.0/0'],
    ['route', 'show', 'table', 'all', 'dev', ifname, 'root', '::/0'],
    ['link', 'show'],
  ];
}

export function parseSnapshot(ifname: string, docs: readonly unknown[]): InterfaceSnapshot {
  const links = parseLinks(docs[3]);
  const link = links.find((l) => l.name === ifname);
  if (!link) throw new InternalError(`interface ${ifname} vanished between two lines of one ip batch`);
  return {
    links,
    link,
    addresses: parseAddresses(docs[0]),
    routes: [...parseRoutes(docs[1], 4), ...parseRoutes(docs[2], 6)],
  };
}

/** Reads link, addresses and routes of `ifname` in `netns` with one process. */
export async function readInterfaceSnapshot(ip: IpRunner, netns: string, ifname: string): Promise<InterfaceSnapshot> {
  return parseSnapshot(ifname, await ip.show(netns, snapshotCommands(ifname)));
}

/** `address replace …`: adds the recorded address back, or leaves it be when it is there. */
export function addressRestoreCommand(addr: RecordedAddress, dev: string): IpCommand {
  const cmd = ['address', 'replace'];
  if (addr.peer !== undefined) cmd.push(addr.local, 'peer', `${addr.peer}/${addr.prefixLength}`);
  else cmd.push(`${addr.local}/${addr.prefixLength}`);
  if (addr.broadcast !== undefined) cmd.push('broadcast', addr.broadcast);
  cmd.push('scope', addr.scope);
  if (addr.label !== undefined) cmd.push('label', addr.label);
  cmd.push('dev', dev, ...addr.flags);
  return cmd;
}

/** The part of a route command that identifies the route (what `route del` matches on). */
function routeKey(route: RecordedRoute, dev: string): string[] {
  const cmd = route.type === 'unicast' ? [route.dst] : [route.type, route.dst];
  if (route.gateway !== undefined) {
    const gwFamily = isIP(route.gateway) === 6 ? 6 : 4;
    // A gateway of the other family (IPv4 over an IPv6 next hop) must say so.
    cmd.push('via', ...(gwFamily === route.family ? [] : [gwFamily === 6 ? 'inet6' : 'inet']), route.gateway);
  }
  cmd.push('dev', dev, 'table', route.table);
  if (route.metric !== undefined) cmd.push('metric', String(route.metric));
  return cmd;
}

export function routeDeleteCommand(route: RecordedRoute, dev: string): IpCommand {
  return ['route', 'del', ...routeKey(route, dev)];
}

/** `route replace …` with every recorded attribute: re-creates the route exactly. */
export function routeRestoreCommand(route: RecordedRoute, dev: string): IpCommand {
  const cmd = ['route', 'replace', ...routeKey(route, dev)];
  if (route.protocol !== undefined) cmd.push('proto', route.protocol);
  // IPv6 routes have no real scope (iproute2 always prints "global"); IPv4 ones keep theirs.
  if (route.scope !== undefined && route.family === 4) cmd.push('scope', route.scope);
  if (route.prefsrc !== undefined) cmd.push('src', route.prefsrc);
  if (route.pref !== undefined) cmd.push('pref', route.pref);
  for (const [key, value] of Object.entries(route.metrics)) cmd.push(key, String(value));
  if (route.onlink) cmd.push('onlink');
  return cmd;
}

/**
 * Restore order: routes without a gateway first, since a gateway route is refused while its
 * gateway is not reachable (e.g. "10.0.0.1/32 dev eth0 scope link" before "default via 10.0.0.1").
 * Deletion runs the same list backwards.
 */
export function routeRestoreOrder(routes: readonly RecordedRoute[]): RecordedRoute[] {
  return [...routes.filter((r) => r.gateway === undefined), ...routes.filter((r) => r.gateway !== undefined)];
}

/**
 * The links of a netns, or undefined when the netns is gone (and with it everything a binding
 * made in it): what every unwiring reads before it decides what to undo.
 */
export async function linksOrGone(ip: IpRunner, netnsName: string): Promise<LinkState[] | undefined> {
  try {
    return parseLinks((await ip.show(netnsName, [['link', 'show']]))[0]);
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}
