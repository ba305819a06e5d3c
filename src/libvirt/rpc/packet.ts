/**
 * Packet framing of libvirt's RPC (src/rpc/virnetprotocol.x): every packet is
 *   length (uint32, counts the whole packet including itself)
 *   header  { prog, vers, proc, type, serial, status }  (six 32-bit words)
 *   payload (XDR, depends on type/status/procedure)
 * A byte stream from the socket is cut into packets by PacketFramer, whatever the chunking.
 */
import { XdrError, XdrReader, XdrWriter } from './xdr.js';

/** virNetMessageType */
export const MessageType = {
  CALL: 0,
  REPLY: 1,
  MESSAGE: 2,
  STREAM: 3,
  CALL_WITH_FDS: 4,
  REPLY_WITH_FDS: 5,
} as const;

/** virNetMessageStatus */
export const MessageStatus = {
  OK: 0,
  ERROR: 1,
  CONTINUE: 2,
} as const;

export interface PacketHeader {
  program: number;
  version: number;
  procedure: number;
  type: number;
  serial: number;
  status: number;
}

export interface Packet {
  header: PacketHeader;
  payload: Buffer;
}

const LENGTH_WORD = 4;
const HEADER_SIZE = 24;
/** VIR_NET_MESSAGE_MAX: largest header + payload; the length word comes on top. */
export const MESSAGE_MAX = 16 * 1024 * 1024;
export const PACKET_MAX = MESSAGE_MAX + LENGTH_WORD;
export const PACKET_MIN = LENGTH_WORD + HEADER_SIZE;

export function encodePacket(header: PacketHeader, payload: Buffer = Buffer.alloc(0)): Buffer {
  const total = PACKET_MIN + payload.length;
  if (total > PACKET_MAX) throw new XdrError(`RPC packet of ${total} bytes exceeds ${PACKET_MAX}`);
  const w = new XdrWriter(PACKET_MIN);
  w.uint(total)
    .uint(header.program)
    .uint(header.version)
    .int(header.procedure)
    .int(header.type)
    .uint(header.serial)
    .int(header.status);
  return Buffer.concat([w.finish(), payload]);
}

/** Decodes one whole packet (length word included), as produced by PacketFramer. */
export function decodePacket(packet: Buffer): Packet {
  if (packet.length < PACKET_MIN) throw new XdrError(`RPC packet of ${packet.length} bytes is shorter than a header`);
  const r = new XdrReader(packet.subarray(0, PACKET_MIN));
  const length = r.uint();
  if (length !== packet.length) throw new XdrError(`RPC packet length word ${length} does not match ${packet.length} bytes`);
  const header: PacketHeader = {
    program: r.uint(),
    version: r.uint(),
    procedure: r.int(),
    type: r.int(),
    serial: r.uint(),
    status: r.int(),
  };
  return { header, payload: packet.subarray(PACKET_MIN) };
}

/**
 * Reassembles packets from socket chunks. Chunks are kept in a list and only joined once a whole
 * packet is present, so a 16 MiB reply arriving in 64 KiB pieces is copied once, not hundreds of times.
 */
export class PacketFramer {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** Adds a chunk and returns every packet now complete, in order. Throws XdrError on an impossible length. */
  push(chunk: Buffer): Buffer[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const packets: Buffer[] = [];
    for (;;) {
      if (this.buffered < LENGTH_WORD) break;
      const length = this.peekLength();
      if (length < PACKET_MIN || length > PACKET_MAX) {
        throw new XdrError(`RPC packet length ${length} outside ${PACKET_MIN}..${PACKET_MAX}`);
      }
      if (this.buffered < length) break;
      packets.push(this.take(length));
    }
    return packets;
  }

  /** Bytes received that do not yet form a whole packet. */
  get pendingBytes(): number {
    return this.buffered;
  }

  private peekLength(): number {
    const first = this.chunks[0]!;
    if (first.length >= LENGTH_WORD) return first.readUInt32BE(0);
    // The length word itself is split across chunks.
    const head = Buffer.concat(this.chunks, Math.min(this.buffered, 16)).subarray(0, LENGTH_WORD);
    return head.readUInt32BE(0);
  }

  private take(length: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= length) {
      out = first.subarray(0, length);
      if (first.length === length) this.chunks.shift();
      else this.chunks[0] = first.subarray(length);
    } else {
      out = Buffer.allocUnsafe(length);
      let filled = 0;
      while (filled < length) {
        const c = this.chunks[0]!;
        const n = Math.min(c.length, length - filled);
        c.copy(out, filled, 0, n);
        filled += n;
        if (n === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(n);
      }
    }
    this.buffered -= length;
    return out;
  }
}
