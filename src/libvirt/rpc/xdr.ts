/**
 * XDR (RFC 4506) encoding and decoding of the types libvirt's remote protocol uses:
 * int, unsigned int, hyper and unsigned hyper (as bigint, never a lossy number), bool, double,
 * strings and opaque data (fixed and variable length, padded to 4 bytes), optional data
 * ("pointer": a bool followed by the value) and variable-length arrays.
 *
 * Both directions check every bound: a value out of range for its type is refused when encoding,
 * and a length beyond the buffer or beyond the declared maximum is refused when decoding, so a
 * malformed or hostile packet yields an XdrError instead of a huge allocation or garbage.
 */
import { InternalError } from '../../errors.js';

export class XdrError extends InternalError {}

const INT32_MIN = -0x8000_0000;
const INT32_MAX = 0x7fff_ffff;
const UINT32_MAX = 0xffff_ffff;
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;
const UINT64_MAX = (1n << 64n) - 1n;

function padding(length: number): number {
  return (4 - (length % 4)) % 4;
}

/** Appends XDR items to a growing buffer; `finish()` returns the bytes written. */
export class XdrWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(initialSize = 256) {
    this.buf = Buffer.alloc(initialSize);
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  int(value: number): this {
    if (!Number.isInteger(value) || value < INT32_MIN || value > INT32_MAX) {
      throw new XdrError(`XDR int out of range: ${value}`);
    }
    this.reserve(4);
    this.buf.writeInt32BE(value, this.pos);
    this.pos += 4;
    return this;
  }

  uint(value: number): this {
    if (!Number.isInteger(value) || value < 0 || value > UINT32_MAX) {
      throw new XdrError(`XDR unsigned int out of range: ${value}`);
    }
    this.reserve(4);
    this.buf.writeUInt32BE(value, this.pos);
    this.pos += 4;
    return this;
  }

  hyper(value: bigint): this {
    if (typeof value !== 'bigint' || value < INT64_MIN || value > INT64_MAX) {
      throw new XdrError(`XDR hyper out of range: ${String(value)}`);
    }
    this.reserve(8);
    this.buf.writeBigInt64BE(value, this.pos);
    this.pos += 8;
    return this;
  }

  uhyper(value: bigint): this {
    if (typeof value !== 'bigint' || value < 0n || value > UINT64_MAX) {
      throw new XdrError(`XDR unsigned hyper out of range: ${String(value)}`);
    }
    this.reserve(8);
    this.buf.writeBigUInt64BE(value, this.pos);
    this.pos += 8;
    return this;
  }

  bool(value: boolean): this {
    return this.int(value ? 1 : 0);
  }

  double(value: number): this {
    this.reserve(8);
    this.buf.writeDoubleBE(value, this.pos);
    this.pos += 8;
    return this;
  }

  /** Fixed-length opaque: exactly `length` bytes, then padding. */
  opaqueFixed(data: Uint8Array, length: number): this {
    if (data.length !== length) throw new XdrError(`XDR fixed opaque needs ${length} bytes, got ${data.length}`);
    this.reserve(length + padding(length));
    this.buf.set(data, this.pos);
    this.pos += length;
    this.buf.fill(0, this.pos, this.pos + padding(length));
    this.pos += padding(length);
    return this;
  }

  /** Variable-length opaque: a length word, the bytes, then padding. */
  opaque(data: Uint8Array, maxLength: number): this {
    if (data.length > maxLength) throw new XdrError(`XDR opaque of ${data.length} bytes exceeds ${maxLength}`);
    this.uint(data.length);
    return this.opaqueFixed(data, data.length);
  }

  string(value: string, maxLength: number): this {
    if (typeof value !== 'string') throw new XdrError('XDR string value is not a string');
    const bytes = Buffer.from(value, 'utf8');
    if (bytes.length > maxLength) throw new XdrError(`XDR string of ${bytes.length} bytes exceeds ${maxLength}`);
    return this.opaque(bytes, maxLength);
  }

  /** XDR optional-data ("*T"): absent encodes as FALSE, present as TRUE followed by the value. */
  optional<T>(value: T | null | undefined, encode: (w: this, v: T) => void): this {
    if (value === null || value === undefined) return this.bool(false);
    this.bool(true);
    encode(this, value);
    return this;
  }

  array<T>(items: readonly T[], maxLength: number, encode: (w: this, item: T) => void): this {
    if (items.length > maxLength) throw new XdrError(`XDR array of ${items.length} items exceeds ${maxLength}`);
    this.uint(items.length);
    for (const item of items) encode(this, item);
    return this;
  }

  get length(): number {
    return this.pos;
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

/** Reads XDR items from a buffer, refusing reads past its end. */
export class XdrReader {
  private pos = 0;

  constructor(private readonly buf: Buffer) {}

  private take(n: number): number {
    if (n < 0 || this.pos + n > this.buf.length) {
      throw new XdrError(`XDR data truncated: need ${n} bytes at offset ${this.pos}, have ${this.buf.length - this.pos}`);
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  int(): number {
    return this.buf.readInt32BE(this.take(4));
  }

  uint(): number {
    return this.buf.readUInt32BE(this.take(4));
  }

  hyper(): bigint {
    return this.buf.readBigInt64BE(this.take(8));
  }

  uhyper(): bigint {
    return this.buf.readBigUInt64BE(this.take(8));
  }

  bool(): boolean {
    const v = this.int();
    if (v !== 0 && v !== 1) throw new XdrError(`XDR bool must be 0 or 1, got ${v}`);
    return v === 1;
  }

  double(): number {
    return this.buf.readDoubleBE(this.take(8));
  }

  opaqueFixed(length: number): Buffer {
    const at = this.take(length);
    this.take(padding(length));
    // A copy, so a decoded value never pins the whole receive buffer.
    return Buffer.from(this.buf.subarray(at, at + length));
  }

  opaque(maxLength: number): Buffer {
    const length = this.uint();
    if (length > maxLength) throw new XdrError(`XDR opaque of ${length} bytes exceeds ${maxLength}`);
    return this.opaqueFixed(length);
  }

  string(maxLength: number): string {
    const length = this.uint();
    if (length > maxLength) throw new XdrError(`XDR string of ${length} bytes exceeds ${maxLength}`);
    const at = this.take(length);
    this.take(padding(length));
    return this.buf.toString('utf8', at, at + length);
  }

  optional<T>(decode: (r: this) => T): T | null {
    return this.bool() ? decode(this) : null;
  }

  array<T>(maxLength: number, decode: (r: this) => T): T[] {
    const length = this.uint();
    if (length > maxLength) throw new XdrError(`XDR array of ${length} items exceeds ${maxLength}`);
    // Each item takes at least 4 bytes on the wire, so a count the buffer cannot hold is refused up front.
    if (length * 4 > this.remaining) throw new XdrError(`XDR array claims ${length} items but only ${this.remaining} bytes remain`);
    const items: T[] = [];
    for (let i = 0; i < length; i++) items.push(decode(this));
    return items;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  /** Every reply must be consumed exactly; trailing bytes mean the layout assumed here is wrong. */
  end(): void {
    if (this.remaining !== 0) throw new XdrError(`XDR data has ${this.remaining} unexpected trailing bytes`);
  }
}
