/**
 * Option 119, domain search list (RFC 3397): the names in DNS wire encoding (RFC 1035 §3.1),
 * with message compression whose pointers are offsets into the option's (concatenated) value.
 */
import { InvalidArgumentError } from '../../errors.js';
import { MalformedDhcpPacketError } from './malformed.js';

const MAX_NAME_WIRE_LENGTH = 255;
const MAX_LABEL_LENGTH = 63;
const MAX_POINTER_OFFSET = 0x3fff;
const labelPattern = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?$/;

/** Labels of a search domain; a single trailing dot (fully qualified form) is accepted. */
function splitDomain(name: string): string[] {
  if (typeof name !== 'string') throw new InvalidArgumentError('search domain is not a string');
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  const labels = trimmed.split('.');
  let wireLength = 1;
  for (const label of labels) {
    if (label.length === 0 || label.length > MAX_LABEL_LENGTH || !labelPattern.test(label)) {
      throw new InvalidArgumentError(`search domain ${JSON.stringify(name)} has an invalid label ${JSON.stringify(label)}`);
    }
    wireLength += 1 + label.length;
  }
  if (wireLength > MAX_NAME_WIRE_LENGTH) {
    throw new InvalidArgumentError(`search domain ${JSON.stringify(name)} is longer than ${MAX_NAME_WIRE_LENGTH} octets on the wire`);
  }
  return labels;
}

/** Encodes the list, pointing repeated suffixes at their first occurrence (compression is optional in RFC 3397 but keeps replies small). */
export function encodeDomainSearch(names: readonly string[]): Buffer {
  if (names.length === 0) throw new InvalidArgumentError('option 119 needs at least one domain');
  const parts: Buffer[] = [];
  let length = 0;
  // Suffix (lower-cased labels joined by ".") to the offset where it was written in full.
  const suffixOffsets = new Map<string, number>();
  for (const name of names) {
    const labels = splitDomain(name);
    let i = 0;
    for (; i < labels.length; i++) {
      const suffix = labels.slice(i).join('.').toLowerCase();
      const earlier = suffixOffsets.get(suffix);
      if (earlier !== undefined) {
        parts.push(Buffer.from([0xc0 | (earlier >> 8), earlier & 0xff]));
        length += 2;
        break;
      }
      if (length <= MAX_POINTER_OFFSET) suffixOffsets.set(suffix, length);
      const label = Buffer.from(labels[i]!, 'latin1');
      parts.push(Buffer.from([label.length]), label);
      length += 1 + label.length;
    }
    if (i === labels.length) {
      parts.push(Buffer.from([0]));
      length += 1;
    }
  }
  return Buffer.concat(parts);
}

/** Decodes the list; pointers must point strictly backwards, so a hostile option cannot loop. */
export function decodeDomainSearch(value: Buffer): string[] {
  const names: string[] = [];
  let offset = 0;
  while (offset < value.length) {
    const { name, next } = readName(value, offset);
    names.push(name);
    offset = next;
  }
  if (names.length === 0) throw new MalformedDhcpPacketError('option 119 is empty');
  return names;
}

function readName(value: Buffer, start: number): { name: string; next: number } {
  const labels: string[] = [];
  let wireLength = 1;
  let offset = start;
  let next: number | undefined;
  // Each jump must land before the previous one, which bounds the walk by the option length.
  let jumpLimit = start;
  for (;;) {
    if (offset >= value.length) throw new MalformedDhcpPacketError(`option 119 name at offset ${start} runs past the end`);
    const octet = value[offset]!;
    if (octet === 0) {
      next ??= offset + 1;
      break;
    }
    const kind = octet & 0xc0;
    if (kind === 0xc0) {
      if (offset + 1 >= value.length) throw new MalformedDhcpPacketError(`option 119 pointer at offset ${offset} is truncated`);
      const target = ((octet & 0x3f) << 8) | value[offset + 1]!;
      if (target >= jumpLimit) {
        throw new MalformedDhcpPacketError(`option 119 pointer at offset ${offset} to ${target} does not point backwards`);
      }
      next ??= offset + 2;
      jumpLimit = target;
      offset = target;
      continue;
    }
    if (kind !== 0) throw new MalformedDhcpPacketError(`option 119 label at offset ${offset} uses reserved type bits`);
    const end = offset + 1 + octet;
    if (end > value.length) throw new MalformedDhcpPacketError(`option 119 label at offset ${offset} runs past the end`);
    wireLength += 1 + octet;
    if (wireLength > MAX_NAME_WIRE_LENGTH) throw new MalformedDhcpPacketError(`option 119 name at offset ${start} exceeds 255 octets`);
    labels.push(value.subarray(offset + 1, end).toString('latin1'));
    offset = end;
  }
  if (labels.length === 0) throw new MalformedDhcpPacketError(`option 119 holds an empty (root) name at offset ${start}`);
  return { name: labels.join('.'), next };
}
