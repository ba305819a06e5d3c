/**
 * Lets clients that send a unix socket path as HTTP/2 `:authority` reach the gRPC server.
 *
 * kubelet and crictl before 1.30 dial `unix:///run/vmlet/vmlet.sock` with the path as the gRPC
 * target, so every request carries `:authority: /run/vmlet/vmlet.sock`. Node's HTTP/2 stack
 * (nghttp2) rejects that value and resets the stream with PROTOCOL_ERROR before any handler runs.
 *
 * This duplex sits between the accepted socket and the HTTP/2 server, inside the same process.
 * It parses client→server frames: DATA and every other frame type pass through byte for byte
 * (never re-encoded, so flow control and stream concurrency are untouched; the frames of one
 * read are joined into one buffer when small, see flush). Header blocks (HEADERS + CONTINUATION) are HPACK-decoded with the client's
 * dynamic table and re-encoded as literals that never enter the server's table — that keeps both
 * tables consistent no matter what the client indexes — with an invalid `:authority` replaced.
 * Server→client bytes are written to the socket unchanged.
 */
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import hpack from 'hpack.js';

const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEADER_LENGTH = 9;
const FRAME_HEADERS = 0x1;
const FRAME_CONTINUATION = 0x9;
const FLAG_END_STREAM = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
/** The smallest SETTINGS_MAX_FRAME_SIZE a peer may announce; re-encoded blocks never exceed it. */
const MAX_OUT_FRAME_PAYLOAD = 16384;
/** Node's HTTP/2 server announces the default header table size; the client's encoder obeys it. */
const SERVER_HEADER_TABLE_SIZE = 4096;
/** Upper bound for one header block, like Node's default maxHeaderListSize: beyond it we give up. */
const MAX_HEADER_BLOCK = 64 * 1024;
/** Frames of one read up to this many bytes in all are joined into one push (see flush). */
const MAX_JOINED_PUSH = 16 * 1024;
/** Frames larger than this are refused (SETTINGS_MAX_FRAME_SIZE upper bound is 2^24-1). */
const MAX_IN_FRAME_PAYLOAD = (1 << 24) - 1;

export const REPLACEMENT_AUTHORITY = 'localhost';

/** nghttp2 accepts only these characters in :authority (RFC 3986 host + port + userinfo). */
const VALID_AUTHORITY = /^[A-Za-z0-9\-._~!$&'()*+,;=:@[\]%]+$/;

export function isValidAuthority(value: string): boolean {
  return VALID_AUTHORITY.test(value);
}

interface Header {
  name: string;
  value: string;
}

interface PendingBlock {
  streamId: number;
  flags: number;
  priority: Buffer | undefined;
  fragments: Buffer[];
  length: number;
}

export class Http2AuthorityRewriter extends Duplex {
  private readonly decoder = hpack.decompressor.create({ table: { maxSize: SERVER_HEADER_TABLE_SIZE } });
  private chunks: Buffer[] = [];
  private buffered = 0;
  private prefaceSeen = false;
  private readerFull = false;
  private block: PendingBlock | undefined;
  /** Frames parsed from the socket's latest read, handed to the HTTP/2 session in one push. */
  private out: Buffer[] = [];
  private outBytes = 0;
  /** Header blocks whose :authority was replaced; exposed for tests and logs. */
  rewrittenCount = 0;

  constructor(private readonly socket: Socket) {
    super({ allowHalfOpen: false });
    socket.on('data', (chunk: Buffer) => this.onSocketData(chunk));
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => {
      if (!this.destroyed) this.destroy();
    });
  }

  // The HTTP/2 server and grpc-js read these from session.socket.
  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.socket.remotePort;
  }
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  setTimeout(ms: number, cb?: () => void): this {
    this.socket.setTimeout(ms, cb);
    return this;
  }

  override _read(): void {
    this.readerFull = false;
    this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.socket.write(chunk, cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.socket.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.socket.write(chunks[i]!.chunk);
    this.socket.write(chunks[chunks.length - 1]!.chunk, cb);
    this.socket.uncork();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy();
    cb(err);
  }

  private onSocketData(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    try {
      this.drainFrames();
    } catch (err) {
      this.out = [];
      this.outBytes = 0;
      this.destroy(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** Returns the first `n` buffered bytes as one buffer (a slice when they lie in one chunk). */
  private takeBytes(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const joined = Buffer.concat(this.chunks, this.buffered);
      out = joined.subarray(0, n);
      this.chunks = joined.length > n ? [joined.subarray(n)] : [];
    }
    this.buffered -= n;
    return out;
  }

  private peekHeader(): Buffer {
    const first = this.chunks[0]!;
    return first.length >= FRAME_HEADER_LENGTH
      ? first.subarray(0, FRAME_HEADER_LENGTH)
      : Buffer.concat(this.chunks, this.buffered).subarray(0, FRAME_HEADER_LENGTH);
  }

  private drainFrames(): void {
    if (!this.prefaceSeen) {
      if (this.buffered < CLIENT_PREFACE.length) return;
      const preface = this.takeBytes(CLIENT_PREFACE.length);
      // Not HTTP/2: hand the bytes on unchanged and let the HTTP/2 server reject them.
      this.prefaceSeen = true;
      this.queue(preface);
      if (!preface.equals(CLIENT_PREFACE)) {
        this.flush();
        this.passThroughRest();
        return;
      }
    }
    while (this.buffered >= FRAME_HEADER_LENGTH) {
      const head = this.peekHeader();
      const length = head.readUIntBE(0, 3);
      if (length > MAX_IN_FRAME_PAYLOAD) throw new Error('HTTP/2 frame too large');
      if (this.buffered < FRAME_HEADER_LENGTH + length) break;
      const type = head[3]!;
      if (type === FRAME_HEADERS || type === FRAME_CONTINUATION || this.block) {
        const frame = this.takeBytes(FRAME_HEADER_LENGTH + length);
        this.onHeaderFrame(frame, type);
      } else {
        this.queue(this.takeBytes(FRAME_HEADER_LENGTH + length));
      }
    }
    this.flush();
    // Backpressure: stop reading the socket until the HTTP/2 session asks for more (_read).
    if (this.readerFull) this.socket.pause();
  }

  private passThroughRest(): void {
    if (this.buffered > 0) this.forward(Buffer.concat(this.chunks, this.buffered));
    this.chunks = [];
    this.buffered = 0;
    this.socket.removeAllListeners('data');
    this.socket.on('data', (chunk: Buffer) => {
      if (!this.forward(chunk)) this.socket.pause();
    });
  }

  private forward(buf: Buffer): boolean {
    if (!this.push(buf)) this.readerFull = true;
    return !this.readerFull;
  }

  private queue(buf: Buffer): void {
    this.out.push(buf);
    this.outBytes += buf.length;
  }

  /**
   * Hands the queued frames on. Every push makes the HTTP/2 session parse synchronously (through
   * Node's JSStreamSocket into nghttp2), so the frames of one read go as one buffer; large reads
   * (bodies) go frame by frame rather than being copied.
   */
  private flush(): void {
    const out = this.out;
    if (out.length === 0) return;
    this.out = [];
    const bytes = this.outBytes;
    this.outBytes = 0;
    if (out.length === 1 || bytes > MAX_JOINED_PUSH) for (const buf of out) this.forward(buf);
    else this.forward(Buffer.concat(out, bytes));
  }

  private onHeaderFrame(frame: Buffer, type: number): void {
    const flags = frame[4]!;
    const streamId = frame.readUInt32BE(5) & 0x7fffffff;
    let payload = frame.subarray(FRAME_HEADER_LENGTH);
    if (type === FRAME_HEADERS) {
      if (this.block) throw new Error('HTTP/2 HEADERS while a header block is open');
      let priority: Buffer | undefined;
      if (flags & FLAG_PADDED) {
        const padLength = payload[0]!;
        if (padLength >= payload.length) throw new Error('HTTP/2 bad padding');
        payload = payload.subarray(1, payload.length - padLength);
      }
      if (flags & FLAG_PRIORITY) {
        if (payload.length < 5) throw new Error('HTTP/2 bad priority');
        priority = payload.subarray(0, 5);
        payload = payload.subarray(5);
      }
      this.block = { streamId, flags, priority, fragments: [payload], length: payload.length };
    } else {
      if (type !== FRAME_CONTINUATION || !this.block || this.block.streamId !== streamId) {
        throw new Error('HTTP/2 frame interleaved with a header block');
      }
      this.block.fragments.push(payload);
      this.block.length += payload.length;
    }
    if (this.block.length > MAX_HEADER_BLOCK) throw new Error('HTTP/2 header block too large');
    if (flags & FLAG_END_HEADERS) {
      const block = this.block;
      this.block = undefined;
      this.emitRewrittenBlock(block);
    }
  }

  private emitRewrittenBlock(block: PendingBlock): void {
    const headers = this.decodeBlock(Buffer.concat(block.fragments, block.length));
    for (const h of headers) {
      if (h.name === ':authority' && !isValidAuthority(h.value)) {
        h.value = REPLACEMENT_AUTHORITY;
        this.rewrittenCount++;
      }
    }
    const encoded = encodeHeaderBlock(headers);
    const priority = block.priority;
    const firstRoom = MAX_OUT_FRAME_PAYLOAD - (priority ? 5 : 0);
    let offset = 0;
    let first = true;
    while (first || offset < encoded.length) {
      const room = first ? firstRoom : MAX_OUT_FRAME_PAYLOAD;
      const piece = encoded.subarray(offset, offset + room);
      offset += piece.length;
      const last = offset >= encoded.length;
      let flags = last ? FLAG_END_HEADERS : 0;
      let type = FRAME_CONTINUATION;
      let body = piece;
      if (first) {
        type = FRAME_HEADERS;
        flags |= block.flags & FLAG_END_STREAM;
        if (priority) {
          flags |= FLAG_PRIORITY;
          body = Buffer.concat([priority, piece]);
        }
      }
      this.queue(frameBytes(type, flags, block.streamId, body));
      first = false;
    }
  }

  private decodeBlock(data: Buffer): Header[] {
    const d = this.decoder;
    let failure: unknown;
    const onError = (err: unknown) => {
      failure = err;
    };
    // Without a callback execute() reports a malformed block synchronously through 'error'.
    d.once('error', onError);
    d.write(data);
    d.execute();
    d.removeListener('error', onError);
    const headers: Header[] = [];
    for (let h = d.read(); h !== null; h = d.read()) headers.push({ name: h.name, value: h.value });
    if (failure) throw failure;
    return headers;
  }
}

function frameBytes(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const head = Buffer.allocUnsafe(FRAME_HEADER_LENGTH);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1), prefix bits of the first octet left zero. */
function pushInt(out: number[], value: number, prefixBits: number, firstByteFlags: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(firstByteFlags | value);
    return;
  }
  out.push(firstByteFlags | max);
  value -= max;
  while (value >= 128) {
    out.push((value % 128) + 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
}

/**
 * Encodes headers as "literal header field without indexing — new name" (RFC 7541 §6.2.2),
 * raw strings. Nothing is added to the receiver's dynamic table.
 */
export function encodeHeaderBlock(headers: readonly Header[]): Buffer {
  const parts: Buffer[] = [];
  for (const { name, value } of headers) {
    const nameBytes = Buffer.from(name, 'latin1');
    const valueBytes = Buffer.from(value, 'latin1');
    const prefix: number[] = [0x00];
    pushInt(prefix, nameBytes.length, 7, 0);
    parts.push(Buffer.from(prefix), nameBytes);
    const valuePrefix: number[] = [];
    pushInt(valuePrefix, valueBytes.length, 7, 0);
    parts.push(Buffer.from(valuePrefix), valueBytes);
  }
  return Buffer.concat(parts);
}
