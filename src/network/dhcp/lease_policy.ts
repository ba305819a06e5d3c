/**
 * What vmlet's DHCP server answers (RFC 2131 §4.3), as a pure function of one fixed lease and one
 * decoded request. Each VM NIC has exactly one address, decided by CNI, so there is no pool and
 * no lease state: the reply depends only on the lease description and the request.
 */
import { InvalidArgumentError } from '../../errors.js';
import type { DnsConfig, RouteConfig } from '../types.js';
import type { ClasslessRoute } from './classless_routes.js';
import { encodeClasslessRoutes } from './classless_routes.js';
import { encodeDomainSearch } from './domain_search.js';
import {
  cidrContains,
  formatIpv4,
  isIpv4,
  macFromBytes,
  normalizeMac,
  parseCidr,
  parseIpv4,
  prefixToMask,
} from './ipv4.js';
import {
  BootOp,
  BROADCAST_FLAG,
  DEFAULT_MAX_MESSAGE_LENGTH,
  encodeMessage,
  ipv4ListOption,
  MessageType,
  OptionCode,
  readIpv4Option,
  readMessageType,
  readParameterRequestList,
  readU16Option,
  textOption,
  u16Option,
  u32Option,
  type DhcpMessage,
} from './packet.js';

export interface DhcpLease {
  /** The VM NIC's MAC; the only client this lease answers. */
  mac: string;
  ip: string;
  prefixLength: number;
  gateway?: string;
  /** IPv4 routes go out as option 121; other families are skipped. A route without gateway uses `gateway`. */
  routes: RouteConfig[];
  /** IPv4 nameservers, search list and domain are sent; resolver options cannot be expressed in DHCP. */
  dns: DnsConfig;
  hostname?: string;
  mtu: number;
  /** Lease time in seconds; 0xffffffff means infinite (RFC 2132 §9.2). */
  leaseSeconds: number;
  /** Option 54: the address the client names when it selects this server. */
  serverId: string;
}

export const INFINITE_LEASE = 0xffffffff;
export const CLIENT_PORT = 68;

/**
 * Where the socket layer sends a reply (RFC 2131 §4.1). `link-unicast` is "to yiaddr at chaddr"
 * for a client that cannot yet receive unicast IP before it is configured; a socket that cannot
 * address a frame to chaddr without ARP sends it as a broadcast instead, which §4.1 allows.
 */
export type ReplyDestination =
  | { kind: 'broadcast'; address: '255.255.255.255'; port: number }
  | { kind: 'unicast'; address: string; port: number }
  | { kind: 'link-unicast'; address: string; mac: string; port: number };

export type NoReplyReason =
  | 'not-a-request'
  | 'not-dhcp'
  | 'unsupported-hardware'
  | 'unknown-client'
  | 'relayed'
  | 'other-server-selected'
  | 'invalid-request'
  | 'released'
  | 'declined'
  | 'unsupported-message';

export type DhcpDecision =
  | { action: 'reply'; reply: 'offer' | 'ack' | 'nak'; message: DhcpMessage; destination: ReplyDestination }
  | { action: 'none'; reason: NoReplyReason; detail: string };

/** The MAC of an Ethernet client, or undefined for other hardware types. */
export function clientMac(request: DhcpMessage): string | undefined {
  return request.htype === 1 && request.hlen === 6 && request.chaddr.length === 6 ? macFromBytes(request.chaddr) : undefined;
}

/**
 * Checks a lease description and returns it normalised (canonical MAC); throws
 * InvalidArgumentError naming the first bad field.
 */
export function validateLease(lease: DhcpLease): DhcpLease {
  const mac = normalizeMac(lease.mac);
  const ip = parseIpv4(lease.ip, 'lease ip');
  if (!Number.isInteger(lease.prefixLength) || lease.prefixLength < 1 || lease.prefixLength > 32) {
    throw new InvalidArgumentError(`lease prefixLength ${lease.prefixLength} is not an integer in 1..32`);
  }
  if (ip === 0 || ip === 0xffffffff) throw new InvalidArgumentError(`lease ip ${lease.ip} is not a host address`);
  if (lease.gateway !== undefined) parseIpv4(lease.gateway, 'lease gateway');
  if (parseIpv4(lease.serverId, 'lease serverId') === 0) throw new InvalidArgumentError('lease serverId must not be 0.0.0.0');
  if (!Number.isInteger(lease.mtu) || lease.mtu < 68 || lease.mtu > 0xffff) {
    throw new InvalidArgumentError(`lease mtu ${lease.mtu} is not an integer in 68..65535`);
  }
  if (!Number.isInteger(lease.leaseSeconds) || lease.leaseSeconds < 1 || lease.leaseSeconds > INFINITE_LEASE) {
    throw new InvalidArgumentError(`lease leaseSeconds ${lease.leaseSeconds} is not an integer in 1..4294967295`);
  }
  if (!Array.isArray(lease.routes)) throw new InvalidArgumentError('lease routes must be an array');
  if (!lease.dns || !Array.isArray(lease.dns.nameservers) || !Array.isArray(lease.dns.search)) {
    throw new InvalidArgumentError('lease dns must have nameservers and search arrays');
  }
  if (lease.hostname !== undefined) validateHostname(lease.hostname);
  if (lease.dns.domain !== undefined) textOption(lease.dns.domain, 'lease dns domain');
  const normalised: DhcpLease = { ...lease, mac };
  // Building every option once surfaces bad routes, search domains and names now, not per request.
  buildLeaseOptions(normalised, 'ack');
  return normalised;
}

function validateHostname(hostname: string): void {
  if (typeof hostname !== 'string' || hostname.length === 0 || hostname.length > 253 || !/^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(hostname)) {
    throw new InvalidArgumentError(`lease hostname ${JSON.stringify(hostname)} is not a valid host name`);
  }
}

/**
 * Decides the reply to `request` for `lease` (the lease registered for the request's MAC, if any).
 * Never throws for a hostile request: malformed option values become `invalid-request`.
 */
export function decideReply(lease: DhcpLease | undefined, request: DhcpMessage): DhcpDecision {
  if (request.op !== BootOp.REQUEST) return none('not-a-request', 'BOOTREPLY received on the server port');
  const mac = clientMac(request);
  if (mac === undefined) return none('unsupported-hardware', `htype ${request.htype} hlen ${request.hlen} is not Ethernet`);
  if (lease === undefined || normalizeMac(lease.mac) !== mac) return none('unknown-client', `no lease for ${mac}`);
  // vmlet's bridge has no relay agents; a relayed packet is forged or misrouted, and answering it
  // would make the server send unicast wherever giaddr points.
  if (request.giaddr !== '0.0.0.0') return none('relayed', `giaddr ${request.giaddr} set on a link without relays`);

  let type;
  let requestedIp: string | undefined;
  let serverId: string | undefined;
  let maxLength = DEFAULT_MAX_MESSAGE_LENGTH;
  try {
    type = readMessageType(request);
    requestedIp = readIpv4Option(request, OptionCode.REQUESTED_IP);
    serverId = readIpv4Option(request, OptionCode.SERVER_ID);
    const maxSize = readU16Option(request, OptionCode.MAX_MESSAGE_SIZE);
    // Option 57 counts the whole IP datagram; below 576 it is invalid and the default applies.
    if (maxSize !== undefined && maxSize >= 576) maxLength = maxSize - 28;
  } catch (err) {
    return none('invalid-request', err instanceof Error ? err.message : String(err));
  }
  if (type === undefined) return none('not-dhcp', 'BOOTP request without option 53');

  switch (type) {
    case MessageType.DISCOVER:
      return reply('offer', lease, request, maxLength);
    case MessageType.REQUEST:
      return decideRequest(lease, request, requestedIp, serverId, maxLength);
    case MessageType.INFORM:
      // The ACK goes unicast to ciaddr, which an INFORM must carry (RFC 2131 §4.4.3).
      if (request.ciaddr === '0.0.0.0') return none('invalid-request', 'INFORM without ciaddr');
      return reply('inform-ack', lease, request, maxLength);
    case MessageType.RELEASE:
      // The address is fixed by CNI for the sandbox's lifetime; nothing is freed.
      return none('released', `${mac} released ${request.ciaddr}`);
    case MessageType.DECLINE:
      // The client found the pod address in use on the link: worth a warning, and offering the
      // same address again is all a single-address server can do.
      return none('declined', `${mac} declined ${requestedIp ?? lease.ip}: address in use on the link`);
    default:
      return none('unsupported-message', `message type ${type} is not sent by clients`);
  }
}

function decideRequest(
  lease: DhcpLease,
  request: DhcpMessage,
  requestedIp: string | undefined,
  serverId: string | undefined,
  maxLength: number,
): DhcpDecision {
  // RFC 2131 §4.3.2 tells the client state apart by option 54, option 50 and ciaddr.
  if (serverId !== undefined) {
    // SELECTING: the client answers one OFFER; if it picked another server it is not talking to us.
    if (serverId !== lease.serverId) return none('other-server-selected', `client selected server ${serverId}`);
    if (request.ciaddr !== '0.0.0.0') return none('invalid-request', 'SELECTING request with ciaddr set');
    if (requestedIp === undefined) return none('invalid-request', 'SELECTING request without option 50');
    return requestedIp === lease.ip ? reply('ack', lease, request, maxLength) : reply('nak', lease, request, maxLength);
  }
  if (requestedIp !== undefined) {
    // INIT-REBOOT: verify the remembered address; ciaddr MUST be zero.
    if (request.ciaddr !== '0.0.0.0') return none('invalid-request', 'INIT-REBOOT request with ciaddr set');
    return requestedIp === lease.ip ? reply('ack', lease, request, maxLength) : reply('nak', lease, request, maxLength);
  }
  // RENEWING (unicast) or REBINDING (broadcast): ciaddr carries the address in use.
  if (request.ciaddr === '0.0.0.0') return none('invalid-request', 'REQUEST without option 54, option 50 or ciaddr');
  return request.ciaddr === lease.ip ? reply('ack', lease, request, maxLength) : reply('nak', lease, request, maxLength);
}

function none(reason: NoReplyReason, detail: string): DhcpDecision {
  return { action: 'none', reason, detail };
}

type ReplyKind = 'offer' | 'ack' | 'inform-ack' | 'nak';

function reply(kind: ReplyKind, lease: DhcpLease, request: DhcpMessage, maxLength: number): DhcpDecision {
  const clientId = request.options.get(OptionCode.CLIENT_ID);
  let options: Map<number, Buffer>;
  if (kind === 'nak') {
    options = new Map([
      [OptionCode.MESSAGE_TYPE, Buffer.from([MessageType.NAK])],
      [OptionCode.SERVER_ID, ipv4ListOption([lease.serverId])],
      [OptionCode.MESSAGE, textOption(`address ${lease.ip} is the only one for this client`, 'NAK message')],
    ]);
  } else {
    options = buildLeaseOptions(lease, kind);
  }
  // RFC 6842: a server echoes the client identifier it was given.
  if (clientId !== undefined) options.set(OptionCode.CLIENT_ID, clientId);

  const message: DhcpMessage = {
    op: BootOp.REPLY,
    htype: request.htype,
    hlen: request.hlen,
    hops: 0,
    xid: request.xid,
    secs: 0,
    flags: request.flags,
    // RFC 2131 table 3: ciaddr is echoed in an ACK, zero in OFFER and NAK; yiaddr is zero in
    // NAK and in the ACK to an INFORM (the client already has its address).
    ciaddr: kind === 'ack' || kind === 'inform-ack' ? request.ciaddr : '0.0.0.0',
    yiaddr: kind === 'offer' || kind === 'ack' ? lease.ip : '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr: Buffer.from(request.chaddr),
    sname: '',
    file: '',
    options,
  };
  fitToClient(message, request, maxLength);
  return {
    action: 'reply',
    reply: kind === 'inform-ack' ? 'ack' : kind,
    message,
    destination: destinationFor(kind, request, lease),
  };
}

/** RFC 2131 §4.1, for a server on the client's own link (relayed requests never get here). */
function destinationFor(kind: ReplyKind, request: DhcpMessage, lease: DhcpLease): ReplyDestination {
  const broadcast = { kind: 'broadcast', address: '255.255.255.255', port: CLIENT_PORT } as const;
  if (kind === 'nak') return broadcast;
  if (request.ciaddr !== '0.0.0.0') return { kind: 'unicast', address: request.ciaddr, port: CLIENT_PORT };
  if ((request.flags & BROADCAST_FLAG) !== 0) return broadcast;
  return { kind: 'link-unicast', address: lease.ip, mac: normalizeMac(lease.mac), port: CLIENT_PORT };
}

/**
 * Keeps the reply within what the client said it accepts (option 57, else 548 octets): when it
 * does not fit, options the client did not ask for in option 55 are dropped, largest first.
 */
function fitToClient(message: DhcpMessage, request: DhcpMessage, maxLength: number): void {
  if (encodeMessage(message).length <= maxLength) return;
  const requested = new Set(readParameterRequestList(request));
  const essential = new Set<number>([OptionCode.MESSAGE_TYPE, OptionCode.SERVER_ID, OptionCode.LEASE_TIME, OptionCode.CLIENT_ID]);
  const droppable = [...message.options.entries()]
    .filter(([code]) => !requested.has(code) && !essential.has(code))
    .sort((a, b) => b[1].length - a[1].length);
  for (const [code] of droppable) {
    message.options.delete(code);
    if (encodeMessage(message).length <= maxLength) return;
  }
  // Still too large with only requested options: send it anyway; clients on a raw socket
  // (the usual case before configuration) read whole frames.
}

/** The configuration options of an OFFER/ACK, in the order clients commonly list them. */
function buildLeaseOptions(lease: DhcpLease, kind: 'offer' | 'ack' | 'inform-ack'): Map<number, Buffer> {
  const ip = parseIpv4(lease.ip);
  const mask = prefixToMask(lease.prefixLength);
  const options = new Map<number, Buffer>();
  options.set(OptionCode.MESSAGE_TYPE, Buffer.from([kind === 'offer' ? MessageType.OFFER : MessageType.ACK]));
  options.set(OptionCode.SERVER_ID, ipv4ListOption([lease.serverId]));
  // RFC 2131 §3.4: the ACK to an INFORM carries no lease time.
  if (kind !== 'inform-ack') {
    options.set(OptionCode.LEASE_TIME, u32Option(lease.leaseSeconds));
    if (lease.leaseSeconds !== INFINITE_LEASE) {
      // RFC 2131 §4.4.5 defaults: T1 = 0.5 and T2 = 0.875 of the lease.
      options.set(OptionCode.RENEWAL_TIME, u32Option(Math.floor(lease.leaseSeconds * 0.5)));
      options.set(OptionCode.REBINDING_TIME, u32Option(Math.floor(lease.leaseSeconds * 0.875)));
    }
  }
  options.set(OptionCode.SUBNET_MASK, u32Option(mask));
  if (lease.prefixLength <= 30) options.set(OptionCode.BROADCAST_ADDRESS, u32Option((ip | ~mask) >>> 0));
  if (lease.gateway !== undefined) options.set(OptionCode.ROUTER, ipv4ListOption([lease.gateway]));
  const routes = classlessRoutesFor(lease);
  if (routes.length > 0) options.set(OptionCode.CLASSLESS_STATIC_ROUTES, encodeClasslessRoutes(routes));
  const nameservers = lease.dns.nameservers.filter((server) => !server.includes(':'));
  if (nameservers.length > 0) options.set(OptionCode.DNS_SERVERS, ipv4ListOption(nameservers));
  if (lease.dns.domain !== undefined) options.set(OptionCode.DOMAIN_NAME, textOption(lease.dns.domain, 'dns domain'));
  if (lease.dns.search.length > 0) options.set(OptionCode.DOMAIN_SEARCH, encodeDomainSearch(lease.dns.search));
  if (lease.hostname !== undefined) options.set(OptionCode.HOSTNAME, textOption(lease.hostname, 'hostname'));
  options.set(OptionCode.INTERFACE_MTU, u16Option(lease.mtu));
  return options;
}

/**
 * The option 121 list. A client that gets option 121 ignores option 3 (RFC 3442 §3), so the
 * default route via the gateway is included unless the routes already name one. A gateway
 * outside the client's subnet (a /32 pod address, for example) gets an on-link host route
 * (router 0.0.0.0) first, or the client could not install the routes through it.
 */
export function classlessRoutesFor(lease: DhcpLease): ClasslessRoute[] {
  const subnet = { network: (parseIpv4(lease.ip) & prefixToMask(lease.prefixLength)) >>> 0, prefixLength: lease.prefixLength };
  const routes: ClasslessRoute[] = [];
  for (const route of lease.routes) {
    if (typeof route?.destination !== 'string') throw new InvalidArgumentError('lease route without destination');
    if (route.destination.includes(':')) continue;
    const destination = parseCidr(route.destination, 'lease route destination');
    const router = route.gateway ?? lease.gateway ?? '0.0.0.0';
    if (!isIpv4(router)) throw new InvalidArgumentError(`lease route ${route.destination} gateway ${JSON.stringify(router)} is not IPv4`);
    routes.push({ destination: `${formatIpv4(destination.network)}/${destination.prefixLength}`, router });
  }
  if (lease.gateway !== undefined && !routes.some((route) => route.destination === '0.0.0.0/0')) {
    routes.push({ destination: '0.0.0.0/0', router: lease.gateway });
  }
  const hostRoutes: ClasslessRoute[] = [];
  for (const router of new Set(routes.map((route) => route.router))) {
    if (router === '0.0.0.0') continue;
    const address = parseIpv4(router);
    if (cidrContains(subnet, address)) continue;
    const hostRoute = `${router}/32`;
    if (routes.some((route) => route.destination === hostRoute)) continue;
    hostRoutes.push({ destination: hostRoute, router: '0.0.0.0' });
  }
  return [...hostRoutes, ...routes];
}
