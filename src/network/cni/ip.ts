import { isIPv4, isIPv6 } from 'node:net';

/** An IP address as a number, so prefixes can be compared without string tricks. */
export interface ParsedIp {
  family: 4 | 6;
  value: bigint;
}

export interface ParsedCidr extends ParsedIp {
  /** The address part exactly as written (lower-cased), e.g. "198.18.0.5". */
  address: string;
  prefixLength: number;
}

function ipv4ToBigint(text: string): bigint {
  return text.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

function ipv6ToBigint(text: string): bigint {
  let head = text;
  // A trailing dotted quad ("::ffff:1.2.3.4") stands for the last two groups.
  const lastColon = head.lastIndexOf(':');
  const tail = head.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = ipv4ToBigint(tail);
    head = `${head.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [left, right] = head.includes('::') ? head.split('::') : [head, undefined];
  const leftGroups = left ? left.split(':') : [];
  const rightGroups = right ? right.split(':') : [];
  const missing = 8 - leftGroups.length - rightGroups.length;
  const groups = right === undefined ? leftGroups : [...leftGroups, ...Array<string>(missing).fill('0'), ...rightGroups];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** Parses a plain IPv4/IPv6 address (no prefix, no zone). Undefined when it is not one. */
export function parseIp(text: string): ParsedIp | undefined {
  if (typeof text !== 'string') return undefined;
  if (isIPv4(text)) return { family: 4, value: ipv4ToBigint(text) };
  if (isIPv6(text) && !text.includes('%')) return { family: 6, value: ipv6ToBigint(text.toLowerCase()) };
  return undefined;
}

/** Parses "address/prefix" (host bits may be set, as CNI results do). Undefined when malformed. */
export function parseCidr(text: string): ParsedCidr | undefined {
  if (typeof text !== 'string') return undefined;
  const slash = text.indexOf('/');
  if (slash < 0 || slash !== text.lastIndexOf('/')) return undefined;
  const address = text.slice(0, slash).toLowerCase();
  const prefixText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText)) return undefined;
  const ip = parseIp(address);
  if (!ip) return undefined;
  const prefixLength = Number(prefixText);
  if (prefixLength > (ip.family === 4 ? 32 : 128)) return undefined;
  return { ...ip, address, prefixLength };
}

/** Whether `ip` lies inside the prefix of `cidr` (same family only). */
export function cidrContains(cidr: ParsedCidr, ip: ParsedIp): boolean {
  if (cidr.family !== ip.family) return false;
  const bits = BigInt(cidr.family === 4 ? 32 : 128);
  const hostBits = bits - BigInt(cidr.prefixLength);
  return cidr.value >> hostBits === ip.value >> hostBits;
}
