/**
 * Strict IPv4 and MAC text helpers for the DHCP server. Strict because every value reaching them
 * comes from configuration or from the wire, and a lenient parser ("010.1" = 8.1?) hides mistakes.
 */
import { InvalidArgumentError } from '../../errors.js';

const ipv4Pattern = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function isIpv4(text: string): boolean {
  return ipv4Pattern.test(text);
}

/** Dotted quad to an unsigned 32-bit number. */
export function parseIpv4(text: string, what = 'IPv4 address'): number {
  if (typeof text !== 'string' || !ipv4Pattern.test(text)) {
    throw new InvalidArgumentError(`${what} ${JSON.stringify(text)} is not a dotted-quad IPv4 address`);
  }
  const parts = text.split('.').map(Number);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function formatIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff].join('.');
}

export function ipv4ToBytes(text: string, what?: string): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(parseIpv4(text, what));
  return bytes;
}

/** Netmask for a prefix length, as a number (0 for /0). */
export function prefixToMask(prefixLength: number): number {
  if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > 32) {
    throw new InvalidArgumentError(`IPv4 prefix length ${prefixLength} is not an integer in 0..32`);
  }
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

export interface Ipv4Cidr {
  network: number;
  prefixLength: number;
}

/** "10.0.0.0/8" to its parts; host bits must be zero, as the kernel also insists for routes. */
export function parseCidr(text: string, what = 'IPv4 CIDR'): Ipv4Cidr {
  const match = typeof text === 'string' ? /^([0-9.]+)\/(\d{1,2})$/.exec(text) : null;
  if (!match) throw new InvalidArgumentError(`${what} ${JSON.stringify(text)} is not of the form a.b.c.d/len`);
  const network = parseIpv4(match[1]!, what);
  const prefixLength = Number(match[2]);
  const mask = prefixToMask(prefixLength);
  if ((network & ~mask) >>> 0 !== 0) {
    throw new InvalidArgumentError(`${what} ${text} has host bits set beyond /${prefixLength}`);
  }
  return { network, prefixLength };
}

export function formatCidr(cidr: Ipv4Cidr): string {
  return `${formatIpv4(cidr.network)}/${cidr.prefixLength}`;
}

export function cidrContains(cidr: Ipv4Cidr, address: number): boolean {
  const mask = prefixToMask(cidr.prefixLength);
  return ((address & mask) >>> 0) === cidr.network;
}

/** Canonical lower-case colon form of a 48-bit MAC ("52:54:00:ab:cd:ef"). */
export function normalizeMac(text: string): string {
  if (typeof text !== 'string' || !/^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$/.test(text)) {
    throw new InvalidArgumentError(`MAC address ${JSON.stringify(text)} is not six colon-separated hex octets`);
  }
  return text.toLowerCase().replaceAll('-', ':');
}

export function macFromBytes(bytes: Buffer): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

export function macToBytes(text: string): Buffer {
  return Buffer.from(normalizeMac(text).split(':').map((h) => parseInt(h, 16)));
}
