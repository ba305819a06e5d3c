/**
 * DHCPv4 wire format (RFC 2131 §2, RFC 2132 for options, RFC 3396 for long options): pure encode
 * and decode of one message. Decoding treats the datagram as hostile: every read is bounds-checked
 * and every failure is a MalformedDhcpPacketError.
 */
import { InvalidArgumentError } from '../../errors.js';
import { formatIpv4, parseIpv4 } from './ipv4.js';
import { MalformedDhcpPacketError } from './malformed.js';

export { MalformedDhcpPacketError };

export const BootOp = { REQUEST: 1, REPLY: 2 } as const;

/** Option 53 values (RFC 2132 §9.6). */
export const MessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;
export type MessageTypeValue = (typeof MessageType)[keyof typeof MessageType];

export const OptionCode = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS_SERVERS: 6,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  INTERFACE_MTU: 26,
  BROADCAST_ADDRESS: 28,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAMETER_REQUEST_LIST: 55,
  MESSAGE: 56,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  CLIENT_ID: 61,
  DOMAIN_SEARCH: 119,
  CLASSLESS_STATIC_ROUTES: 121,
  END: 255,
} as const;

/** Broadcast bit of the flags field (RFC 2131 §2, figure 2). */
export const BROADCAST_FLAG = 0x8000;

export const MAGIC_COOKIE = Buffer.from([99, 130, 83, 99]);

/** Fixed BOOTP header length; the magic cookie follows at this offset. */
export const HEADER_LENGTH = 236;
/** Smallest BOOTP message relay agents and old clients accept (RFC 1542 §2.1); replies are padded to it. */
export const MIN_MESSAGE_LENGTH = 300;
/** Largest message every client must accept when it sends no option 57: 576-byte IP datagram minus IP and UDP headers. */
export const DEFAULT_MAX_MESSAGE_LENGTH = 576 - 20 - 8;

const SNAME_OFFSET = 44;
const SNAME_LENGTH = 64;
const FILE_OFFSET = 108;
const FILE_LENGTH = 128;
const OPTIONS_OFFSET = HEADER_LENGTH + MAGIC_COOKIE.length;

export interface DhcpMessage {
  op: 1 | 2;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** The client hardware address: the first `hlen` octets of the 16-octet chaddr field. */
  chaddr: Buffer;
  /** Server host name field; empty when unused or when it carried overloaded options. */
  sname: string;
  /** Boot file name field; empty when unused or when it carried overloaded options. */
  file: string;
  /**
   * Options by code in wire order. A code that appeared several times holds the concatenation of
   * its instances (RFC 3396 §6); pad and end are not options and never appear here.
   */
  options: Map<number, Buffer>;
}

// ---------------------------------------------------------------------------------------------
// Encode

/** Serialises a message; long option values are split into several instances (RFC 3396 §7). */
export function encodeMessage(message: DhcpMessage): Buffer {
  const header = Buffer.alloc(HEADER_LENGTH);
  header.writeUInt8(checkedInt(message.op, 1, 2, 'op'), 0);
  header.writeUInt8(checkedInt(message.htype, 0, 0xff, 'htype'), 1);
  header.writeUInt8(checkedInt(message.hlen, 0, 16, 'hlen'), 2);
  header.writeUInt8(checkedInt(message.hops, 0, 0xff, 'hops'), 3);
  header.writeUInt32BE(checkedInt(message.xid, 0, 0xffffffff, 'xid'), 4);
  header.writeUInt16BE(checkedInt(message.secs, 0, 0xffff, 'secs'), 8);
  header.writeUInt16BE(checkedInt(message.flags, 0, 0xffff, 'flags'), 10);
  header.writeUInt32BE(parseIpv4(message.ciaddr, 'ciaddr'), 12);
  header.writeUInt32BE(parseIpv4(message.yiaddr, 'yiaddr'), 16);
  header.writeUInt32BE(parseIpv4(message.siaddr, 'siaddr'), 20);
  header.writeUInt32BE(parseIpv4(message.giaddr, 'giaddr'), 24);
  if (message.chaddr.length > 16) {
    throw new InvalidArgumentError(`chaddr is ${message.chaddr.length} octets; the field holds 16`);
  }
  message.chaddr.copy(header, 28);
  writeFixedText(header, SNAME_OFFSET, SNAME_LENGTH, message.sname, 'sname');
  writeFixedText(header, FILE_OFFSET, FILE_LENGTH, message.file, 'file');

  const parts: Buffer[] = [header, MAGIC_COOKIE];
  for (const [code, value] of message.options) {
    checkedInt(code, 1, 254, 'option code');
    if (!Buffer.isBuffer(value)) throw new InvalidArgumentError(`option ${code} value is not a Buffer`);
    if (value.length === 0) {
      parts.push(Buffer.from([code, 0]));
      continue;
    }
    for (let offset = 0; offset < value.length; offset += 255) {
      const chunk = value.subarray(offset, offset + 255);
      parts.push(Buffer.from([code, chunk.length]), chunk);
    }
  }
  parts.push(Buffer.from([OptionCode.END]));
  const body = Buffer.concat(parts);
  return body.length >= MIN_MESSAGE_LENGTH ? body : Buffer.concat([body, Buffer.alloc(MIN_MESSAGE_LENGTH - body.length)]);
}

function checkedInt(value: number, min: number, max: number, what: string): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`${what} ${value} is not an integer in ${min}..${max}`);
  }
  return value;
}

function writeFixedText(target: Buffer, offset: number, length: number, text: string, what: string): void {
  const bytes = Buffer.from(text, 'latin1');
  // One octet stays zero so the field is NUL-terminated, as clients read it as a C string.
  if (bytes.length >= length || bytes.includes(0)) {
    throw new InvalidArgumentError(`${what} must be under ${length} octets without NUL`);
  }
  bytes.copy(target, offset);
}

// ---------------------------------------------------------------------------------------------
// Decode

/** Parses one DHCP datagram. Unknown options and padding are kept or skipped; overruns are errors. */
export function decodeMessage(datagram: Buffer): DhcpMessage {
  if (!Buffer.isBuffer(datagram)) throw new MalformedDhcpPacketError('DHCP datagram is not a Buffer');
  if (datagram.length < OPTIONS_OFFSET) {
    throw new MalformedDhcpPacketError(
      `DHCP datagram is ${datagram.length} octets; the header and magic cookie need ${OPTIONS_OFFSET}`,
    );
  }
  const op = datagram.readUInt8(0);
  if (op !== BootOp.REQUEST && op !== BootOp.REPLY) throw new MalformedDhcpPacketError(`BOOTP op ${op} is neither 1 nor 2`);
  const hlen = datagram.readUInt8(2);
  if (hlen > 16) throw new MalformedDhcpPacketError(`hlen ${hlen} exceeds the 16-octet chaddr field`);
  if (!datagram.subarray(HEADER_LENGTH, OPTIONS_OFFSET).equals(MAGIC_COOKIE)) {
    throw new MalformedDhcpPacketError(
      `magic cookie is ${datagram.subarray(HEADER_LENGTH, OPTIONS_OFFSET).toString('hex')}, expected 63825363`,
    );
  }

  const options = new Map<number, Buffer[]>();
  parseOptionArea(datagram, OPTIONS_OFFSET, datagram.length, 'options', options);
  // Option 52 moves further options into the file and sname fields, read in that order (RFC 3396 §5).
  const overload = options.get(OptionCode.OVERLOAD);
  let fileIsOptions = false;
  let snameIsOptions = false;
  if (overload) {
    const value = Buffer.concat(overload);
    if (value.length !== 1 || value[0]! < 1 || value[0]! > 3) {
      throw new MalformedDhcpPacketError(`option 52 (overload) must be one octet of 1, 2 or 3`);
    }
    fileIsOptions = (value[0]! & 1) !== 0;
    snameIsOptions = (value[0]! & 2) !== 0;
    if (fileIsOptions) parseOptionArea(datagram, FILE_OFFSET, FILE_OFFSET + FILE_LENGTH, 'file field', options);
    if (snameIsOptions) parseOptionArea(datagram, SNAME_OFFSET, SNAME_OFFSET + SNAME_LENGTH, 'sname field', options);
  }

  const joined = new Map<number, Buffer>();
  for (const [code, chunks] of options) joined.set(code, Buffer.concat(chunks));
  return {
    op,
    htype: datagram.readUInt8(1),
    hlen,
    hops: datagram.readUInt8(3),
    xid: datagram.readUInt32BE(4),
    secs: datagram.readUInt16BE(8),
    flags: datagram.readUInt16BE(10),
    ciaddr: formatIpv4(datagram.readUInt32BE(12)),
    yiaddr: formatIpv4(datagram.readUInt32BE(16)),
    siaddr: formatIpv4(datagram.readUInt32BE(20)),
    giaddr: formatIpv4(datagram.readUInt32BE(24)),
    chaddr: Buffer.from(datagram.subarray(28, 28 + hlen)),
    sname: snameIsOptions ? '' : readFixedText(datagram, SNAME_OFFSET, SNAME_LENGTH),
    file: fileIsOptions ? '' : readFixedText(datagram, FILE_OFFSET, FILE_LENGTH),
    options: joined,
  };
}

function parseOptionArea(data: Buffer, start: number, end: number, area: string, into: Map<number, Buffer[]>): void {
  let offset = start;
  while (offset < end) {
    const code = data[offset]!;
    if (code === OptionCode.PAD) {
      offset += 1;
      continue;
    }
    if (code === OptionCode.END) return;
    if (offset + 1 >= end) throw new MalformedDhcpPacketError(`option ${code} at offset ${offset} of ${area} has no length octet`);
    const length = data[offset + 1]!;
    const valueStart = offset + 2;
    if (valueStart + length > end) {
      throw new MalformedDhcpPacketError(
        `option ${code} at offset ${offset} of ${area} claims ${length} octets but only ${end - valueStart} remain`,
      );
    }
    if (code === OptionCode.OVERLOAD && area !== 'options') {
      throw new MalformedDhcpPacketError(`option 52 (overload) may only appear in the options field, found in ${area}`);
    }
    const chunks = into.get(code);
    const value = Buffer.from(data.subarray(valueStart, valueStart + length));
    if (chunks) chunks.push(value);
    else into.set(code, [value]);
    offset = valueStart + length;
  }
  // Reaching the end of the area without an end option is tolerated: some clients stop there.
}

function readFixedText(data: Buffer, offset: number, length: number): string {
  const field = data.subarray(offset, offset + length);
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? length : nul).toString('latin1');
}

// ---------------------------------------------------------------------------------------------
// Option values: encoders for replies, readers for requests.

export function u8Option(value: number): Buffer {
  return Buffer.from([checkedInt(value, 0, 0xff, 'option value')]);
}

export function u16Option(value: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16BE(checkedInt(value, 0, 0xffff, 'option value'));
  return out;
}

export function u32Option(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(checkedInt(value, 0, 0xffffffff, 'option value'));
  return out;
}

export function ipv4ListOption(addresses: readonly string[]): Buffer {
  if (addresses.length === 0) throw new InvalidArgumentError('an address-list option needs at least one address');
  const out = Buffer.alloc(4 * addresses.length);
  addresses.forEach((address, i) => out.writeUInt32BE(parseIpv4(address), 4 * i));
  return out;
}

/** NVT ASCII text option (host name, domain name, message): printable ASCII, no NUL (RFC 2132 §2). */
export function textOption(text: string, what: string): Buffer {
  if (typeof text !== 'string' || text.length === 0 || !/^[\x20-\x7e]+$/.test(text)) {
    throw new InvalidArgumentError(`${what} ${JSON.stringify(text)} must be non-empty printable ASCII`);
  }
  return Buffer.from(text, 'latin1');
}

export function readMessageType(message: DhcpMessage): MessageTypeValue | undefined {
  const value = message.options.get(OptionCode.MESSAGE_TYPE);
  if (value === undefined) return undefined;
  if (value.length !== 1 || value[0]! < MessageType.DISCOVER || value[0]! > MessageType.INFORM) {
    throw new MalformedDhcpPacketError(`option 53 (message type) must be one octet in 1..8, got ${value.toString('hex')}`);
  }
  return value[0] as MessageTypeValue;
}

export function readIpv4Option(message: DhcpMessage, code: number): string | undefined {
  const value = message.options.get(code);
  if (value === undefined) return undefined;
  if (value.length !== 4) throw new MalformedDhcpPacketError(`option ${code} must be 4 octets, got ${value.length}`);
  return formatIpv4(value.readUInt32BE(0));
}

export function readIpv4ListOption(message: DhcpMessage, code: number): string[] | undefined {
  const value = message.options.get(code);
  if (value === undefined) return undefined;
  if (value.length === 0 || value.length % 4 !== 0) {
    throw new MalformedDhcpPacketError(`option ${code} must be a non-empty multiple of 4 octets, got ${value.length}`);
  }
  const out: string[] = [];
  for (let i = 0; i < value.length; i += 4) out.push(formatIpv4(value.readUInt32BE(i)));
  return out;
}

export function readU16Option(message: DhcpMessage, code: number): number | undefined {
  const value = message.options.get(code);
  if (value === undefined) return undefined;
  if (value.length !== 2) throw new MalformedDhcpPacketError(`option ${code} must be 2 octets, got ${value.length}`);
  return value.readUInt16BE(0);
}

export function readU32Option(message: DhcpMessage, code: number): number | undefined {
  const value = message.options.get(code);
  if (value === undefined) return undefined;
  if (value.length !== 4) throw new MalformedDhcpPacketError(`option ${code} must be 4 octets, got ${value.length}`);
  return value.readUInt32BE(0);
}

/** Option 55 as a list of codes; an empty list is valid and means "nothing in particular". */
export function readParameterRequestList(message: DhcpMessage): number[] {
  const value = message.options.get(OptionCode.PARAMETER_REQUEST_LIST);
  return value === undefined ? [] : [...value];
}
