/**
 * SPDY/3.1 frames (SPDY protocol draft 3.1, section 2): the byte layout of every frame the
 * Kubernetes streaming protocols use, parsed from and written to a byte stream. Pure: header
 * blocks are passed in and out still compressed (see header_block.ts).
 */

export const SPDY_VERSION = 3;
/** Control frame types. */
export const SYN_STREAM = 1;
export const SYN_REPLY = 2;
export const RST_STREAM = 3;
export const SETTINGS = 4;
export const PING = 6;
export const GOAWAY = 7;
export const HEADERS = 8;
export const WINDOW_UPDATE = 9;
/** Flags. */
export const FLAG_FIN = 0x01;
export const FLAG_UNIDIRECTIONAL = 0x02;
/** RST_STREAM status codes. */
export const RST_PROTOCOL_ERROR = 1;
export const RST_INVALID_STREAM = 2;
export const RST_REFUSED_STREAM = 3;
export const RST_CANCEL = 5;
export const RST_INTERNAL_ERROR = 6;
/** GOAWAY status codes. */
export const GOAWAY_OK = 0;
export const GOAWAY_PROTOCOL_ERROR = 1;

/** 24-bit length field. */
export const MAX_FRAME_PAYLOAD = 0xffffff;

export type SpdyFrame =
  | { kind: 'data'; streamId: number; flags: number; data: Buffer }
  | { kind: 'synStream'; streamId: number; associatedId: number; priority: number; flags: number; headerBlock: Buffer }
  | { kind: 'synReply'; streamId: number; flags: number; headerBlock: Buffer }
  | { kind: 'headers'; streamId: number; flags: number; headerBlock: Buffer }
  | { kind: 'rstStream'; streamId: number; status: number }
  | { kind: 'settings'; flags: number; entries: { flags: number; id: number; value: number }[] }
  | { kind: 'ping'; id: number }
  | { kind: 'goaway'; lastGoodStreamId: number; status: number }
  | { kind: 'windowUpdate'; streamId: number; delta: number }
  | { kind: 'unknown'; type: number; flags: number };

export class SpdyProtocolError extends Error {}

/**
 * Splits `buf` into whole frames; returns them and the unconsumed rest (an incomplete frame).
 * Throws SpdyProtocolError for a frame that is malformed or too large.
 */
export function parseFrames(buf: Buffer, maxPayload: number): { frames: SpdyFrame[]; rest: Buffer } {
  const frames: SpdyFrame[] = [];
  let off = 0;
  while (buf.length - off >= 8) {
    const length = buf.readUIntBE(off + 5, 3);
    if (length > maxPayload) throw new SpdyProtocolError(`frame of ${length} bytes is larger than ${maxPayload}`);
    if (buf.length - off < 8 + length) break;
    const flags = buf[off + 4]!;
    const payload = buf.subarray(off + 8, off + 8 + length);
    if (buf[off]! & 0x80) {
      const version = buf.readUInt16BE(off) & 0x7fff;
      if (version !== SPDY_VERSION) throw new SpdyProtocolError(`SPDY version ${version} is not 3`);
      frames.push(controlFrame(buf.readUInt16BE(off + 2), flags, payload));
    } else {
      frames.push({ kind: 'data', streamId: buf.readUInt32BE(off) & 0x7fffffff, flags, data: payload });
    }
    off += 8 + length;
  }
  return { frames, rest: buf.subarray(off) };
}

function controlFrame(type: number, flags: number, p: Buffer): SpdyFrame {
  const need = (n: number) => {
    if (p.length < n) throw new SpdyProtocolError(`control frame type ${type} is too short (${p.length} bytes)`);
  };
  const id = (at: number) => p.readUInt32BE(at) & 0x7fffffff;
  switch (type) {
    case SYN_STREAM:
      need(10);
      return { kind: 'synStream', streamId: id(0), associatedId: id(4), priority: p[8]! >> 5, flags, headerBlock: p.subarray(10) };
    case SYN_REPLY:
      need(4);
      return { kind: 'synReply', streamId: id(0), flags, headerBlock: p.subarray(4) };
    case HEADERS:
      need(4);
      return { kind: 'headers', streamId: id(0), flags, headerBlock: p.subarray(4) };
    case RST_STREAM:
      need(8);
      return { kind: 'rstStream', streamId: id(0), status: p.readUInt32BE(4) };
    case SETTINGS: {
      need(4);
      const count = p.readUInt32BE(0);
      if (p.length !== 4 + count * 8) throw new SpdyProtocolError('SETTINGS length does not match its entry count');
      const entries = [];
      for (let i = 0; i < count; i++) {
        const at = 4 + i * 8;
        entries.push({ flags: p[at]!, id: p.readUIntBE(at + 1, 3), value: p.readUInt32BE(at + 4) });
      }
      return { kind: 'settings', flags, entries };
    }
    case PING:
      need(4);
      return { kind: 'ping', id: p.readUInt32BE(0) };
    case GOAWAY:
      need(8);
      return { kind: 'goaway', lastGoodStreamId: id(0), status: p.readUInt32BE(4) };
    case WINDOW_UPDATE:
      need(8);
      return { kind: 'windowUpdate', streamId: id(0), delta: p.readUInt32BE(4) & 0x7fffffff };
    default:
      return { kind: 'unknown', type, flags };
  }
}

function control(type: number, flags: number, payload: Buffer): Buffer {
  if (payload.length > MAX_FRAME_PAYLOAD) throw new RangeError(`control frame payload of ${payload.length} bytes`);
  const head = Buffer.alloc(8);
  head.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  head.writeUInt16BE(type, 2);
  head[4] = flags;
  head.writeUIntBE(payload.length, 5, 3);
  return Buffer.concat([head, payload]);
}

function u32s(...values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeUInt32BE(v >>> 0, i * 4));
  return b;
}

/** The 8-byte header of a DATA frame; the payload follows it on the wire. */
export function dataFrameHeader(streamId: number, flags: number, length: number): Buffer {
  if (length > MAX_FRAME_PAYLOAD) throw new RangeError(`data frame payload of ${length} bytes`);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(streamId & 0x7fffffff, 0);
  head[4] = flags;
  head.writeUIntBE(length, 5, 3);
  return head;
}

export function synStreamFrame(streamId: number, flags: number, headerBlock: Buffer, priority = 0): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt32BE(streamId & 0x7fffffff, 0);
  fixed[8] = (priority & 7) << 5;
  return control(SYN_STREAM, flags, Buffer.concat([fixed, headerBlock]));
}

export function synReplyFrame(streamId: number, flags: number, headerBlock: Buffer): Buffer {
  return control(SYN_REPLY, flags, Buffer.concat([u32s(streamId & 0x7fffffff), headerBlock]));
}

export function rstStreamFrame(streamId: number, status: number): Buffer {
  return control(RST_STREAM, 0, u32s(streamId & 0x7fffffff, status));
}

export function pingFrame(id: number): Buffer {
  return control(PING, 0, u32s(id));
}

export function goawayFrame(lastGoodStreamId: number, status: number): Buffer {
  return control(GOAWAY, 0, u32s(lastGoodStreamId & 0x7fffffff, status));
}

export function windowUpdateFrame(streamId: number, delta: number): Buffer {
  return control(WINDOW_UPDATE, 0, u32s(streamId & 0x7fffffff, delta & 0x7fffffff));
}
