/**
 * DHCPv6 wire format (RFC 8415 §8 and §21) for the client/server messages vmlet's server handles:
 * pure encode and decode of one message and of the options it uses (IA_NA with IAADDR, status
 * code, DUIDs, DNS servers and search list of RFC 3646). Decoding treats the datagram as hostile:
 * every read is bounds-checked and every failure is a MalformedDhcpPacketError.
 * Hand-written: no maintained npm package encodes DHCPv6 (the registry has DHCPv4 ones only).
 */
import { InvalidArgumentError } from '../../errors.js';
import { encodeDomainSearch, decodeDomainSearch } from '../dhcp/domain_search.js';
import { MalformedDhcpPacketError } from '../dhcp/malformed.js';
import { formatIpv6, ipv6ToBytes } from './address.js';

export { MalformedDhcpPacketError };

export const DHCP6_SERVER_PORT = 547;
export const DHCP6_CLIENT_PORT = 546;
/** All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1). */
export const ALL_DHCP_SERVERS = 'ff02::1:2';

export const Dhcp6MessageType = {
  SOLICIT: 1,
  ADVERTISE: 2,
  REQUEST: 3,
  CONFIRM: 4,
  RENEW: 5,
  REBIND: 6,
  REPLY: 7,
  RELEASE: 8,
  DECLINE: 9,
  RECONFIGURE: 10,
  INFORMATION_REQUEST: 11,
  RELAY_FORW: 12,
  RELAY_REPL: 13,
} as const;

export const Dhcp6Option = {
  CLIENTID: 1,
  SERVERID: 2,
  IA_NA: 3,
  IA_TA: 4,
  IAADDR: 5,
  ORO: 6,
  PREFERENCE: 7,
  ELAPSED_TIME: 8,
  STATUS_CODE: 13,
  RAPID_COMMIT: 14,
  DNS_SERVERS: 23,
  DOMAIN_LIST: 24,
} as const;

export const Dhcp6Status = { SUCCESS: 0, UNSPEC_FAIL: 1, NO_ADDRS_AVAIL: 2, NO_BINDING: 3, NOT_ON_LINK: 4, USE_MULTICAST: 5 } as const;

export interface Dhcp6OptionValue {
  code: number;
  value: Buffer;
}

/** A client/server message (relay messages are not handled: no relay sits on a pod bridge). */
export interface Dhcp6Message {
  type: number;
  /** 24 bits. */
  transactionId: number;
  /** In wire order; a code may appear more than once (several IA_NAs). */
  options: Dhcp6OptionValue[];
}

export interface IaAddress {
  address: string;
  preferredLifetime: number;
  validLifetime: number;
  /** Options inside the IAADDR (a status code). */
  options?: Dhcp6OptionValue[];
}

export interface IaNa {
  iaid: number;
  t1: number;
  t2: number;
  addresses: IaAddress[];
  status?: { code: number; message: string };
}

const HEADER_LENGTH = 4;
const MAX_MESSAGE_LENGTH = 65535 - 8;

function checkedInt(value: number, min: number, max: number, what: string): number {
  if (!Number.isInteger(value) || value < min || value > max) throw new InvalidArgumentError(`${what} ${value} is not an integer in ${min}..${max}`);
  return value;
}

function encodeOptions(options: readonly Dhcp6OptionValue[]): Buffer {
  const parts: Buffer[] = [];
  for (const { code, value } of options) {
    checkedInt(code, 1, 0xffff, 'option code');
    if (!Buffer.isBuffer(value) || value.length > 0xffff) throw new InvalidArgumentError(`option ${code} value must be a Buffer of at most 65535 octets`);
    const head = Buffer.alloc(4);
    head.writeUInt16BE(code, 0);
    head.writeUInt16BE(value.length, 2);
    parts.push(head, value);
  }
  return Buffer.concat(parts);
}

function decodeOptions(data: Buffer, where: string): Dhcp6OptionValue[] {
  const out: Dhcp6OptionValue[] = [];
  let offset = 0;
  while (offset < data.length) {
    if (offset + 4 > data.length) throw new MalformedDhcpPacketError(`${where}: option header at offset ${offset} is cut short`);
    const code = data.readUInt16BE(offset);
    const length = data.readUInt16BE(offset + 2);
    if (offset + 4 + length > data.length) {
      throw new MalformedDhcpPacketError(`${where}: option ${code} at offset ${offset} claims ${length} octets but ${data.length - offset - 4} remain`);
    }
    out.push({ code, value: Buffer.from(data.subarray(offset + 4, offset + 4 + length)) });
    offset += 4 + length;
  }
  return out;
}

export function encodeDhcp6Message(message: Dhcp6Message): Buffer {
  checkedInt(message.type, 1, 255, 'message type');
  if (message.type === Dhcp6MessageType.RELAY_FORW || message.type === Dhcp6MessageType.RELAY_REPL) {
    throw new InvalidArgumentError('relay messages are not client/server messages');
  }
  const head = Buffer.alloc(HEADER_LENGTH);
  head.writeUInt8(message.type, 0);
  head.writeUIntBE(checkedInt(message.transactionId, 0, 0xffffff, 'transaction id'), 1, 3);
  const out = Buffer.concat([head, encodeOptions(message.options)]);
  if (out.length > MAX_MESSAGE_LENGTH) throw new InvalidArgumentError(`DHCPv6 message of ${out.length} octets does not fit a UDP datagram`);
  return out;
}

export function decodeDhcp6Message(datagram: Buffer): Dhcp6Message {
  if (!Buffer.isBuffer(datagram)) throw new MalformedDhcpPacketError('DHCPv6 datagram is not a Buffer');
  if (datagram.length < HEADER_LENGTH) throw new MalformedDhcpPacketError(`DHCPv6 datagram is ${datagram.length} octets; the header needs 4`);
  const type = datagram.readUInt8(0);
  if (type === 0) throw new MalformedDhcpPacketError('DHCPv6 message type 0 is reserved');
  if (type === Dhcp6MessageType.RELAY_FORW || type === Dhcp6MessageType.RELAY_REPL) {
    throw new MalformedDhcpPacketError('relay messages are not served (no relay agent sits on a pod bridge)');
  }
  return { type, transactionId: datagram.readUIntBE(1, 3), options: decodeOptions(datagram.subarray(HEADER_LENGTH), 'message') };
}

/** The value of the only (or first) option `code`. */
export function optionValue(message: { options: readonly Dhcp6OptionValue[] }, code: number): Buffer | undefined {
  return message.options.find((o) => o.code === code)?.value;
}

// ---------------------------------------------------------------------------------------------
// Option values

/** DUID-LL (RFC 8415 §11.4): hardware type 1 (Ethernet) and the MAC; stable for as long as the MAC is. */
export function duidLl(mac: string): Buffer {
  const octets = mac.split(':').map((o) => parseInt(o, 16));
  if (octets.length !== 6 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255)) throw new InvalidArgumentError(`${JSON.stringify(mac)} is not a MAC address`);
  return Buffer.from([0, 3, 0, 1, ...octets]);
}

export function encodeIaNa(ia: IaNa): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt32BE(checkedInt(ia.iaid, 0, 0xffffffff, 'IAID'), 0);
  head.writeUInt32BE(checkedInt(ia.t1, 0, 0xffffffff, 'T1'), 4);
  head.writeUInt32BE(checkedInt(ia.t2, 0, 0xffffffff, 'T2'), 8);
  const inner: Dhcp6OptionValue[] = ia.addresses.map((a) => ({ code: Dhcp6Option.IAADDR, value: encodeIaAddress(a) }));
  if (ia.status) inner.push({ code: Dhcp6Option.STATUS_CODE, value: encodeStatus(ia.status.code, ia.status.message) });
  return Buffer.concat([head, encodeOptions(inner)]);
}

export function decodeIaNa(value: Buffer): IaNa {
  if (value.length < 12) throw new MalformedDhcpPacketError(`IA_NA is ${value.length} octets; it needs at least 12`);
  const ia: IaNa = { iaid: value.readUInt32BE(0), t1: value.readUInt32BE(4), t2: value.readUInt32BE(8), addresses: [] };
  for (const option of decodeOptions(value.subarray(12), 'IA_NA')) {
    if (option.code === Dhcp6Option.IAADDR) ia.addresses.push(decodeIaAddress(option.value));
    else if (option.code === Dhcp6Option.STATUS_CODE) ia.status = decodeStatus(option.value);
  }
  return ia;
}

export function encodeIaAddress(a: IaAddress): Buffer {
  const fixed = Buffer.alloc(24);
  ipv6ToBytes(a.address, 'IA address').copy(fixed, 0);
  fixed.writeUInt32BE(checkedInt(a.preferredLifetime, 0, 0xffffffff, 'preferred lifetime'), 16);
  fixed.writeUInt32BE(checkedInt(a.validLifetime, 0, 0xffffffff, 'valid lifetime'), 20);
  return Buffer.concat([fixed, encodeOptions(a.options ?? [])]);
}

export function decodeIaAddress(value: Buffer): IaAddress {
  if (value.length < 24) throw new MalformedDhcpPacketError(`IAADDR is ${value.length} octets; it needs at least 24`);
  const options = decodeOptions(value.subarray(24), 'IAADDR');
  return {
    address: formatIpv6(value.subarray(0, 16)),
    preferredLifetime: value.readUInt32BE(16),
    validLifetime: value.readUInt32BE(20),
    ...(options.length > 0 ? { options } : {}),
  };
}

export function encodeStatus(code: number, message: string): Buffer {
  const head = Buffer.alloc(2);
  head.writeUInt16BE(checkedInt(code, 0, 0xffff, 'status code'), 0);
  return Buffer.concat([head, Buffer.from(message, 'utf8')]);
}

export function decodeStatus(value: Buffer): { code: number; message: string } {
  if (value.length < 2) throw new MalformedDhcpPacketError(`status code option is ${value.length} octets; it needs at least 2`);
  return { code: value.readUInt16BE(0), message: value.subarray(2).toString('utf8') };
}

export function encodeAddressList(addresses: readonly string[]): Buffer {
  return Buffer.concat(addresses.map((a) => ipv6ToBytes(a, 'DNS server')));
}

export function decodeAddressList(value: Buffer): string[] {
  if (value.length % 16 !== 0) throw new MalformedDhcpPacketError(`address list of ${value.length} octets is not a multiple of 16`);
  const out: string[] = [];
  for (let i = 0; i < value.length; i += 16) out.push(formatIpv6(value.subarray(i, i + 16)));
  return out;
}

/** Option 24: the names in DNS wire format, uncompressed (RFC 8415 §10). */
export function encodeDomainList(names: readonly string[]): Buffer {
  // One name at a time: option 119's encoder compresses across names, which DHCPv6 forbids.
  return Buffer.concat(names.map((name) => encodeDomainSearch([name])));
}

export function decodeDomainList(value: Buffer): string[] {
  return decodeDomainSearch(value);
}

/** The option codes an ORO (option 6) asks for. */
export function decodeOptionRequest(value: Buffer): number[] {
  if (value.length % 2 !== 0) throw new MalformedDhcpPacketError(`option request option of ${value.length} octets is not a list of 16-bit codes`);
  const out: number[] = [];
  for (let i = 0; i < value.length; i += 2) out.push(value.readUInt16BE(i));
  return out;
}
