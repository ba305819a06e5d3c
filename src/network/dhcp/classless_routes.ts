/**
 * Option 121, classless static routes (RFC 3442 §3): each route is the prefix width, only the
 * significant octets of the destination (ceil(width/8)), then the 4-octet router.
 */
import { InvalidArgumentError } from '../../errors.js';
import { formatCidr, formatIpv4, parseCidr, parseIpv4, prefixToMask } from './ipv4.js';
import { MalformedDhcpPacketError } from './malformed.js';

export interface ClasslessRoute {
  /** "a.b.c.d/len" with no host bits set. */
  destination: string;
  /** Next hop; "0.0.0.0" is the common convention for an on-link route. */
  router: string;
}

export function encodeClasslessRoutes(routes: readonly ClasslessRoute[]): Buffer {
  if (routes.length === 0) throw new InvalidArgumentError('option 121 needs at least one route');
  const parts: Buffer[] = [];
  for (const route of routes) {
    const { network, prefixLength } = parseCidr(route.destination, 'option 121 destination');
    const significant = Math.ceil(prefixLength / 8);
    const descriptor = Buffer.alloc(1 + significant + 4);
    descriptor[0] = prefixLength;
    for (let i = 0; i < significant; i++) descriptor[1 + i] = (network >>> (24 - 8 * i)) & 0xff;
    descriptor.writeUInt32BE(parseIpv4(route.router, 'option 121 router'), 1 + significant);
    parts.push(descriptor);
  }
  return Buffer.concat(parts);
}

export function decodeClasslessRoutes(value: Buffer): ClasslessRoute[] {
  if (value.length < 5) throw new MalformedDhcpPacketError(`option 121 is ${value.length} octets; its minimum is 5`);
  const routes: ClasslessRoute[] = [];
  let offset = 0;
  while (offset < value.length) {
    const prefixLength = value[offset]!;
    if (prefixLength > 32) throw new MalformedDhcpPacketError(`option 121 route at offset ${offset} has width ${prefixLength} > 32`);
    const significant = Math.ceil(prefixLength / 8);
    const end = offset + 1 + significant + 4;
    if (end > value.length) {
      throw new MalformedDhcpPacketError(`option 121 route at offset ${offset} needs ${end - offset} octets, ${value.length - offset} remain`);
    }
    let network = 0;
    for (let i = 0; i < significant; i++) network |= value[offset + 1 + i]! << (24 - 8 * i);
    network >>>= 0;
    if ((network & ~prefixToMask(prefixLength)) >>> 0 !== 0) {
      throw new MalformedDhcpPacketError(`option 121 destination ${formatIpv4(network)} has bits set beyond /${prefixLength}`);
    }
    routes.push({
      destination: formatCidr({ network, prefixLength }),
      router: formatIpv4(value.readUInt32BE(offset + 1 + significant)),
    });
    offset = end;
  }
  return routes;
}
