/**
 * A SPDY/3.1 session over any byte stream (a TCP socket after the HTTP upgrade, or a WebSocket's
 * binary messages for the tunnelled port-forward): streams opened by the peer arrive as 'stream'
 * events, each a Duplex of its DATA frames with the peer's headers; openStream() opens one
 * (the client side, used by tests).
 *
 * Flow control: the Kubernetes clients' SPDY implementation (spdystream) neither sends nor obeys
 * WINDOW_UPDATE, so neither does this session; backpressure is TCP's. A stream whose reader falls
 * behind pauses reading the whole connection until it drains, as spdystream does.
 */
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import {
  FLAG_FIN,
  GOAWAY_OK,
  GOAWAY_PROTOCOL_ERROR,
  RST_INVALID_STREAM,
  RST_PROTOCOL_ERROR,
  RST_REFUSED_STREAM,
  SpdyProtocolError,
  dataFrameHeader,
  goawayFrame,
  parseFrames,
  pingFrame,
  rstStreamFrame,
  synReplyFrame,
  synStreamFrame,
  type SpdyFrame,
} from './frames.js';
import { HeaderCodec, type HeaderMap } from './header_block.js';

/** Largest DATA payload this side sends (the peer accepts up to 2^24-1). */
const MAX_DATA_CHUNK = 32 * 1024;
/** Largest frame accepted from the peer. */
const MAX_INCOMING_FRAME = 1024 * 1024;

export interface SpdySessionOptions {
  /** `server`: accepts odd (client) stream ids and opens even ones. */
  role: 'server' | 'client';
  /** Bytes that arrived after the HTTP upgrade head, before this session took the socket. */
  head?: Buffer;
}

export class SpdyStream extends Duplex {
  /** The headers of the SYN_STREAM (peer-opened) or of the SYN_REPLY (self-opened, once replied). */
  headers: HeaderMap;
  private remoteFinished = false;
  replied: Promise<HeaderMap>;
  private resolveReply!: (h: HeaderMap) => void;
  private rejectReply!: (e: Error) => void;

  constructor(
    private readonly session: SpdySession,
    readonly id: number,
    headers: HeaderMap,
  ) {
    super({ allowHalfOpen: true });
    this.headers = headers;
    this.replied = new Promise((resolve, reject) => {
      this.resolveReply = resolve;
      this.rejectReply = reject;
    });
    this.replied.catch(() => {});
  }

  /** The first value of header `name` (names are lowercase on the wire). */
  header(name: string): string | undefined {
    return this.headers[name.toLowerCase()]?.[0];
  }

  /** Accepts a peer-opened stream (SYN_REPLY); `fin` also ends this side. */
  reply(headers: HeaderMap = {}, fin = false): Promise<void> {
    return this.session.sendSynReply(this.id, headers, fin);
  }

  /** RST_STREAM to the peer, and this stream is done. */
  reset(status: number): void {
    if (this.destroyed) return;
    this.session.sendReset(this.id, status);
    this.destroy();
  }

  override _read(): void {
    this.session.resumeReading(this);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.session.sendData(this.id, chunk, false).then(() => cb(), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.session.sendData(this.id, Buffer.alloc(0), true).then(() => cb(), cb);
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    this.session.forget(this.id);
    this.rejectReply(err ?? new Error('stream closed'));
    cb(err);
  }

  /** @internal */
  onData(data: Buffer, fin: boolean): void {
    if (this.remoteFinished) return;
    if (data.length > 0 && !this.push(data)) this.session.pauseReading(this);
    if (fin) this.onRemoteFin();
  }

  /** @internal */
  onRemoteFin(): void {
    if (this.remoteFinished) return;
    this.remoteFinished = true;
    this.push(null);
  }

  /** @internal */
  onReply(headers: HeaderMap, fin: boolean): void {
    this.headers = headers;
    this.resolveReply(headers);
    if (fin) this.onRemoteFin();
  }

  /** @internal */
  onReset(status: number): void {
    const err = new Error(`stream ${this.id} reset by the peer (status ${status})`);
    this.rejectReply(err);
    // A reset ends both directions; readers see the end, not an error, as spdystream's do.
    this.onRemoteFin();
    this.destroy();
  }
}

export class SpdySession extends EventEmitter {
  private readonly codec = new HeaderCodec();
  private readonly streams = new Map<number, SpdyStream>();
  private inbound: Buffer = Buffer.alloc(0);
  /** Frames are handled one at a time, in order: header blocks decompress asynchronously. */
  private readChain: Promise<void> = Promise.resolve();
  private writeChain: Promise<void> = Promise.resolve();
  private readonly paused = new Set<SpdyStream>();
  private lastPeerStreamId = 0;
  private nextOwnStreamId: number;
  private nextPingId: number;
  private closed = false;
  /** GOAWAY queued: frames still go out, new peer streams are refused. */
  private closing = false;

  constructor(
    private readonly transport: Duplex,
    private readonly options: SpdySessionOptions,
  ) {
    super();
    this.nextOwnStreamId = options.role === 'server' ? 2 : 1;
    this.nextPingId = options.role === 'server' ? 2 : 1;
    transport.on('data', (chunk: Buffer) => this.onBytes(chunk));
    // Frames already received are handled first: their header blocks may still be inflating.
    transport.on('end', () => void this.readChain.then(() => this.shutdown()));
    transport.on('close', () => void this.readChain.then(() => this.shutdown()));
    transport.on('error', (err) => this.shutdown(err));
    if (options.head && options.head.length > 0) this.onBytes(options.head);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Opens a stream (client role in tests; the server never needs to). */
  openStream(headers: HeaderMap, fin = false): SpdyStream {
    const id = this.nextOwnStreamId;
    this.nextOwnStreamId += 2;
    const stream = new SpdyStream(this, id, headers);
    this.streams.set(id, stream);
    this.enqueue(async () => synStreamFrame(id, fin ? FLAG_FIN : 0, await this.codec.compress(headers)));
    if (fin) stream.end();
    return stream;
  }

  ping(): void {
    const id = this.nextPingId;
    this.nextPingId += 2;
    this.enqueue(() => pingFrame(id));
  }

  /** GOAWAY, then the transport ends once queued frames are out. */
  close(status = GOAWAY_OK): Promise<void> {
    if (this.closed || this.closing) return Promise.resolve();
    this.closing = true;
    this.enqueue(() => goawayFrame(this.lastPeerStreamId, status));
    return this.writeChain.then(() => {
      this.transport.end();
      this.shutdown();
    });
  }

  /** @internal */
  sendSynReply(id: number, headers: HeaderMap, fin: boolean): Promise<void> {
    return this.enqueue(async () => synReplyFrame(id, fin ? FLAG_FIN : 0, await this.codec.compress(headers)));
  }

  /** @internal */
  sendReset(id: number, status: number): void {
    this.enqueue(() => rstStreamFrame(id, status)).catch(() => {});
  }

  /** @internal */
  async sendData(id: number, data: Buffer, fin: boolean): Promise<void> {
    if (data.length === 0) {
      await this.enqueue(() => dataFrameHeader(id, fin ? FLAG_FIN : 0, 0));
      return;
    }
    for (let off = 0; off < data.length; off += MAX_DATA_CHUNK) {
      const part = data.subarray(off, off + MAX_DATA_CHUNK);
      const last = off + MAX_DATA_CHUNK >= data.length;
      await this.enqueue(() => Buffer.concat([dataFrameHeader(id, fin && last ? FLAG_FIN : 0, part.length), part]));
    }
  }

  /** @internal */
  forget(id: number): void {
    const s = this.streams.get(id);
    if (s) this.resumeReading(s);
    this.streams.delete(id);
  }

  /** @internal */
  pauseReading(stream: SpdyStream): void {
    this.paused.add(stream);
    this.transport.pause();
  }

  /** @internal */
  resumeReading(stream: SpdyStream): void {
    if (this.paused.delete(stream) && this.paused.size === 0 && !this.closed) this.transport.resume();
  }

  /** Frames leave in the order enqueue was called; resolves once the transport took the bytes. */
  private enqueue(build: () => Buffer | Promise<Buffer>): Promise<void> {
    const result = this.writeChain.then(async () => {
      if (this.closed && this.transport.writableEnded) throw new Error('SPDY session is closed');
      const bytes = await build();
      if (!this.transport.write(bytes)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            this.transport.off('drain', done);
            this.transport.off('close', done);
            resolve();
          };
          this.transport.on('drain', done);
          this.transport.on('close', done);
        });
      }
    });
    this.writeChain = result.catch(() => undefined);
    return result;
  }

  private onBytes(chunk: Buffer): void {
    if (this.closed) return;
    this.inbound = this.inbound.length ? Buffer.concat([this.inbound, chunk]) : chunk;
    let frames: SpdyFrame[];
    try {
      const parsed = parseFrames(this.inbound, MAX_INCOMING_FRAME);
      frames = parsed.frames;
      this.inbound = parsed.rest;
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    for (const frame of frames) {
      this.readChain = this.readChain.then(() => this.handle(frame)).catch((err: Error) => this.fail(err));
    }
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.emit('protocolError', err);
    this.close(err instanceof SpdyProtocolError ? GOAWAY_PROTOCOL_ERROR : GOAWAY_OK).catch(() => {});
  }

  private async handle(frame: SpdyFrame): Promise<void> {
    if (this.closed) return;
    switch (frame.kind) {
      case 'data': {
        const s = this.streams.get(frame.streamId);
        if (!s) return this.sendReset(frame.streamId, RST_INVALID_STREAM);
        s.onData(frame.data, (frame.flags & FLAG_FIN) !== 0);
        return;
      }
      case 'synStream': {
        const headers = await this.codec.decompress(frame.headerBlock);
        const peerParity = this.options.role === 'server' ? 1 : 0;
        if (frame.streamId % 2 !== peerParity || frame.streamId <= this.lastPeerStreamId || this.streams.has(frame.streamId)) {
          return this.sendReset(frame.streamId, RST_PROTOCOL_ERROR);
        }
        if (this.closing) return this.sendReset(frame.streamId, RST_REFUSED_STREAM);
        this.lastPeerStreamId = frame.streamId;
        const s = new SpdyStream(this, frame.streamId, headers);
        this.streams.set(frame.streamId, s);
        if (frame.flags & FLAG_FIN) s.onRemoteFin();
        this.emit('stream', s);
        return;
      }
      case 'synReply': {
        const headers = await this.codec.decompress(frame.headerBlock);
        this.streams.get(frame.streamId)?.onReply(headers, (frame.flags & FLAG_FIN) !== 0);
        return;
      }
      case 'headers': {
        await this.codec.decompress(frame.headerBlock); // keeps the zlib context in step
        if (frame.flags & FLAG_FIN) this.streams.get(frame.streamId)?.onRemoteFin();
        return;
      }
      case 'rstStream':
        this.streams.get(frame.streamId)?.onReset(frame.status);
        return;
      case 'ping':
        // Peer-initiated pings (odd from a client, even from a server) are echoed.
        if (frame.id % 2 !== this.nextPingId % 2) this.enqueue(() => pingFrame(frame.id)).catch(() => {});
        return;
      case 'goaway':
        this.shutdown();
        this.transport.end();
        return;
      case 'settings':
      case 'windowUpdate':
      case 'unknown':
        return;
    }
  }

  private shutdown(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.streams.values()) {
      // Data already received stays readable; the stream goes once its reader saw the end.
      s.onRemoteFin();
      if (s.readableEnded) s.destroy();
      else s.once('end', () => s.destroy());
    }
    this.streams.clear();
    this.paused.clear();
    this.codec.close();
    this.emit('close', err);
  }
}
