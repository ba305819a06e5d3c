/**
 * Router advertisements (RFC 4861 §4.2) as vmlet sends them on a pod bridge: managed flag (the
 * address comes from DHCPv6), the on-link prefix without the autonomous flag, RDNSS and DNSSL
 * (RFC 8106), route information (RFC 4191) for the CNI routes that are not the default one, the
 * MTU, and the bridge's link-layer address. Pure encode, and a decode for tests and checks. The
 * kernel fills in the ICMPv6 checksum (raw ICMPv6 sockets always do, RFC 3542 §3.1).
 * Hand-written: no maintained npm package encodes neighbour discovery messages.
 */
import { InvalidArgumentError } from '../../errors.js';
import { MalformedDhcpPacketError } from '../dhcp/malformed.js';
import { decodeDomainList, encodeDomainList } from './dhcp6_packet.js';
import { formatIpv6, ipv6Prefix, ipv6ToBytes } from './address.js';

export const ICMP6_ROUTER_ADVERT = 134;
export const ALL_NODES = 'ff02::1';

const enum NdOption {
  SOURCE_LINK_ADDRESS = 1,
  PREFIX_INFORMATION = 3,
  MTU = 5,
  ROUTE_INFORMATION = 24,
  RDNSS = 25,
  DNSSL = 31,
}

export interface RaPrefix {
  prefix: string;
  length: number;
  onLink: boolean;
  autonomous: boolean;
  validLifetime: number;
  preferredLifetime: number;
}

export interface RaRoute {
  prefix: string;
  length: number;
  lifetime: number;
}

export interface RouterAdvert {
  curHopLimit: number;
  managed: boolean;
  other: boolean;
  /** Seconds; 0: not a default router. */
  routerLifetime: number;
  reachableTime: number;
  retransTimer: number;
  sourceMac?: string;
  mtu?: number;
  prefixes: RaPrefix[];
  routes: RaRoute[];
  dns?: { lifetime: number; servers: string[] };
  search?: { lifetime: number; names: string[] };
}

function u(value: number, max: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > max) throw new InvalidArgumentError(`${what} ${value} is not an integer in 0..${max}`);
  return value;
}

/** One option: type, length in units of 8 octets, and the body padded to that. */
function option(type: NdOption, body: Buffer): Buffer {
  const total = Math.ceil((body.length + 2) / 8) * 8;
  const out = Buffer.alloc(total);
  out[0] = type;
  out[1] = total / 8;
  body.copy(out, 2);
  return out;
}

export function encodeRouterAdvert(ra: RouterAdvert): Buffer {
  const head = Buffer.alloc(16);
  head[0] = ICMP6_ROUTER_ADVERT;
  head[4] = u(ra.curHopLimit, 255, 'hop limit');
  head[5] = (ra.managed ? 0x80 : 0) | (ra.other ? 0x40 : 0);
  head.writeUInt16BE(u(ra.routerLifetime, 9000, 'router lifetime'), 6);
  head.writeUInt32BE(u(ra.reachableTime, 3_600_000, 'reachable time'), 8);
  head.writeUInt32BE(u(ra.retransTimer, 0xffffffff, 'retransmission timer'), 12);
  const parts: Buffer[] = [head];
  if (ra.sourceMac !== undefined) {
    const mac = Buffer.from(ra.sourceMac.split(':').map((o) => parseInt(o, 16)));
    if (mac.length !== 6 || mac.some((o) => Number.isNaN(o))) throw new InvalidArgumentError(`${JSON.stringify(ra.sourceMac)} is not a MAC address`);
    parts.push(option(NdOption.SOURCE_LINK_ADDRESS, mac));
  }
  if (ra.mtu !== undefined) {
    const body = Buffer.alloc(6);
    body.writeUInt32BE(u(ra.mtu, 0xffffffff, 'MTU'), 2);
    parts.push(option(NdOption.MTU, body));
  }
  for (const p of ra.prefixes) {
    const body = Buffer.alloc(30);
    body[0] = u(p.length, 128, 'prefix length');
    body[1] = (p.onLink ? 0x80 : 0) | (p.autonomous ? 0x40 : 0);
    body.writeUInt32BE(u(p.validLifetime, 0xffffffff, 'valid lifetime'), 2);
    body.writeUInt32BE(u(p.preferredLifetime, 0xffffffff, 'preferred lifetime'), 6);
    ipv6ToBytes(ipv6Prefix(p.prefix, p.length), 'prefix').copy(body, 14);
    parts.push(option(NdOption.PREFIX_INFORMATION, body));
  }
  for (const r of ra.routes) {
    // RFC 4191 §2.3: the prefix takes 0, 8 or 16 octets, as few as its length needs.
    const prefixOctets = r.length === 0 ? 0 : r.length <= 64 ? 8 : 16;
    const body = Buffer.alloc(6 + prefixOctets);
    body[0] = u(r.length, 128, 'route prefix length');
    body[1] = 0; // medium preference
    body.writeUInt32BE(u(r.lifetime, 0xffffffff, 'route lifetime'), 2);
    ipv6ToBytes(ipv6Prefix(r.prefix, r.length), 'route prefix').copy(body, 6, 0, prefixOctets);
    parts.push(option(NdOption.ROUTE_INFORMATION, body));
  }
  if (ra.dns && ra.dns.servers.length > 0) {
    const body = Buffer.alloc(6 + 16 * ra.dns.servers.length);
    body.writeUInt32BE(u(ra.dns.lifetime, 0xffffffff, 'RDNSS lifetime'), 2);
    ra.dns.servers.forEach((s, i) => ipv6ToBytes(s, 'DNS server').copy(body, 6 + 16 * i));
    parts.push(option(NdOption.RDNSS, body));
  }
  if (ra.search && ra.search.names.length > 0) {
    const lifetime = Buffer.alloc(6);
    lifetime.writeUInt32BE(u(ra.search.lifetime, 0xffffffff, 'DNSSL lifetime'), 2);
    parts.push(option(NdOption.DNSSL, Buffer.concat([lifetime, encodeDomainList(ra.search.names)])));
  }
  const out = Buffer.concat(parts);
  if (out.length > 1280 - 40) throw new InvalidArgumentError(`router advertisement of ${out.length} octets exceeds the minimum IPv6 MTU`);
  return out;
}

/** Decodes what encodeRouterAdvert makes (unknown options are skipped). For tests and checks. */
export function decodeRouterAdvert(data: Buffer): RouterAdvert {
  if (data.length < 16 || data[0] !== ICMP6_ROUTER_ADVERT) throw new MalformedDhcpPacketError('not a router advertisement');
  const ra: RouterAdvert = {
    curHopLimit: data[4]!,
    managed: (data[5]! & 0x80) !== 0,
    other: (data[5]! & 0x40) !== 0,
    routerLifetime: data.readUInt16BE(6),
    reachableTime: data.readUInt32BE(8),
    retransTimer: data.readUInt32BE(12),
    prefixes: [],
    routes: [],
  };
  for (let offset = 16; offset < data.length; ) {
    if (offset + 2 > data.length || data[offset + 1] === 0) throw new MalformedDhcpPacketError(`option at ${offset} has no length`);
    const end = offset + data[offset + 1]! * 8;
    if (end > data.length) throw new MalformedDhcpPacketError(`option at ${offset} overruns the message`);
    const body = data.subarray(offset + 2, end);
    switch (data[offset]) {
      case NdOption.SOURCE_LINK_ADDRESS:
        ra.sourceMac = [...body.subarray(0, 6)].map((o) => o.toString(16).padStart(2, '0')).join(':');
        break;
      case NdOption.MTU:
        ra.mtu = body.readUInt32BE(2);
        break;
      case NdOption.PREFIX_INFORMATION:
        ra.prefixes.push({
          length: body[0]!,
          onLink: (body[1]! & 0x80) !== 0,
          autonomous: (body[1]! & 0x40) !== 0,
          validLifetime: body.readUInt32BE(2),
          preferredLifetime: body.readUInt32BE(6),
          prefix: formatIpv6(body.subarray(14, 30)),
        });
        break;
      case NdOption.ROUTE_INFORMATION: {
        const prefix = Buffer.alloc(16);
        body.subarray(6).copy(prefix);
        ra.routes.push({ length: body[0]!, lifetime: body.readUInt32BE(2), prefix: formatIpv6(prefix) });
        break;
      }
      case NdOption.RDNSS: {
        const servers: string[] = [];
        for (let i = 6; i + 16 <= body.length; i += 16) servers.push(formatIpv6(body.subarray(i, i + 16)));
        ra.dns = { lifetime: body.readUInt32BE(2), servers };
        break;
      }
      case NdOption.DNSSL: {
        // Padding zeros after the last name read as empty names; drop them.
        const names = decodeDomainList(trimZeros(body.subarray(6)));
        ra.search = { lifetime: body.readUInt32BE(2), names };
        break;
      }
    }
    offset = end;
  }
  return ra;
}

function trimZeros(value: Buffer): Buffer {
  let end = value.length;
  while (end > 1 && value[end - 1] === 0 && value[end - 2] === 0) end--;
  return value.subarray(0, end);
}
