/** IPv6 addresses as 16-octet buffers, and the link-local address of a MAC (RFC 4291 §2.5.1). Pure. */
import { isIPv4, isIPv6 } from 'node:net';
import { InvalidArgumentError } from '../../errors.js';

/** The 16 octets of an IPv6 address in text form (no zone). */
export function ipv6ToBytes(text: string, what = 'IPv6 address'): Buffer {
  if (typeof text !== 'string' || !isIPv6(text) || text.includes('%')) {
    throw new InvalidArgumentError(`${what} ${JSON.stringify(text)} is not an IPv6 address`);
  }
  let groups = text;
  const lastColon = text.lastIndexOf(':');
  const last = text.slice(lastColon + 1);
  if (isIPv4(last)) {
    // An embedded IPv4 address (::ffff:192.0.2.1) is the last two groups.
    const o = last.split('.').map(Number);
    groups = `${text.slice(0, lastColon + 1)}${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const [head, rest] = groups.includes('::') ? groups.split('::') : [groups, undefined];
  const parse = (part: string | undefined): number[] => (part ? part.split(':').map((g) => parseInt(g, 16)) : []);
  const front = parse(head);
  const back = parse(rest);
  const zeros = 8 - front.length - back.length;
  const all = rest === undefined ? front : [...front, ...new Array<number>(zeros).fill(0), ...back];
  if (all.length !== 8) throw new InvalidArgumentError(`${what} ${JSON.stringify(text)} is not an IPv6 address`);
  const out = Buffer.alloc(16);
  all.forEach((group, i) => out.writeUInt16BE(group, i * 2));
  return out;
}

/** RFC 5952 text form of 16 octets: lower case, the longest run of two or more zero groups as "::". */
export function formatIpv6(bytes: Buffer): string {
  if (bytes.length !== 16) throw new InvalidArgumentError(`an IPv6 address is 16 octets, not ${bytes.length}`);
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/** The canonical text form of an IPv6 address, for comparisons. */
export function canonicalIpv6(text: string, what?: string): string {
  return formatIpv6(ipv6ToBytes(text, what));
}

/** The first `prefixLength` bits of `address`, the rest zero, as text ("fd00:1::"). */
export function ipv6Prefix(address: string, prefixLength: number): string {
  if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > 128) {
    throw new InvalidArgumentError(`IPv6 prefix length ${prefixLength} is not in 0..128`);
  }
  const bytes = ipv6ToBytes(address);
  for (let bit = prefixLength; bit < 128; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return formatIpv6(bytes);
}

/** fe80::/64 with the modified EUI-64 interface identifier of `mac` (RFC 4291 appendix A). */
export function linkLocalFromMac(mac: string): string {
  const octets = mac.split(':').map((o) => parseInt(o, 16));
  if (octets.length !== 6 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255)) {
    throw new InvalidArgumentError(`${JSON.stringify(mac)} is not a MAC address`);
  }
  const bytes = Buffer.alloc(16);
  bytes[0] = 0xfe;
  bytes[1] = 0x80;
  Buffer.from([octets[0]! ^ 0x02, octets[1]!, octets[2]!, 0xff, 0xfe, octets[3]!, octets[4]!, octets[5]!]).copy(bytes, 8);
  return formatIpv6(bytes);
}
