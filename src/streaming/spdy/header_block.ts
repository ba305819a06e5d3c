/**
 * SPDY/3 name/value header blocks (draft 3.1, section 2.6.10): a 32-bit pair count, then per pair
 * a 32-bit length + lowercase name and a 32-bit length + value (several values joined by NUL).
 * Each direction of a connection compresses its blocks with one zlib stream that starts from the
 * SPDY/3 dictionary and is sync-flushed after every block, so blocks must be compressed and
 * decompressed in wire order (HeaderCodec serializes them).
 */
import zlib from 'node:zlib';
import { SPDY3_DICTIONARY } from './dictionary.js';
import { SpdyProtocolError } from './frames.js';

export type HeaderMap = Record<string, string[]>;

/** Bound on one decompressed header block: the streaming protocols send a few short headers. */
const MAX_HEADER_BLOCK = 256 * 1024;

export function encodeHeaderBlock(headers: HeaderMap): Buffer {
  const parts: Buffer[] = [];
  const entries = Object.entries(headers).filter(([, values]) => values.length > 0);
  const count = Buffer.alloc(4);
  count.writeUInt32BE(entries.length);
  parts.push(count);
  for (const [name, values] of entries) {
    for (const b of [Buffer.from(name.toLowerCase(), 'utf8'), Buffer.from(values.join('\0'), 'utf8')]) {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(b.length);
      parts.push(len, b);
    }
  }
  return Buffer.concat(parts);
}

export function decodeHeaderBlock(block: Buffer): HeaderMap {
  const out: HeaderMap = {};
  let off = 0;
  const take = (): Buffer => {
    if (block.length - off < 4) throw new SpdyProtocolError('truncated header block');
    const len = block.readUInt32BE(off);
    off += 4;
    if (block.length - off < len) throw new SpdyProtocolError('truncated header block');
    const b = block.subarray(off, off + len);
    off += len;
    return b;
  };
  if (block.length < 4) throw new SpdyProtocolError('truncated header block');
  const count = block.readUInt32BE(0);
  off = 4;
  for (let i = 0; i < count; i++) {
    const name = take().toString('utf8');
    const value = take().toString('utf8');
    if (name.length === 0) continue; // zero-length names are ignored (draft 3.1)
    if (name !== name.toLowerCase()) throw new SpdyProtocolError(`header name ${JSON.stringify(name)} is not lowercase`);
    if (out[name]) throw new SpdyProtocolError(`header ${name} appears twice`);
    out[name] = value.split('\0');
  }
  return out;
}

/**
 * One direction's zlib context. run() takes blocks in order and answers each with its output
 * once zlib has processed it (a sync flush marks the end of each block).
 */
class ZlibContext {
  private chain: Promise<unknown> = Promise.resolve();
  private failed: Error | undefined;

  constructor(private readonly z: zlib.Deflate | zlib.Inflate) {
    z.on('error', (err) => {
      this.failed = err;
    });
  }

  run(input: Buffer): Promise<Buffer> {
    const result = this.chain.then(
      () =>
        new Promise<Buffer>((resolve, reject) => {
          if (this.failed) return reject(this.failed);
          this.z.write(input);
          this.z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
            if (this.failed) return reject(new SpdyProtocolError(`header compression: ${this.failed.message}`));
            const chunks: Buffer[] = [];
            let total = 0;
            for (let c: Buffer | null; (c = this.z.read() as Buffer | null) !== null; ) {
              chunks.push(c);
              total += c.length;
            }
            if (total > MAX_HEADER_BLOCK) return reject(new SpdyProtocolError(`header block over ${MAX_HEADER_BLOCK} bytes`));
            resolve(Buffer.concat(chunks, total));
          });
        }),
    );
    this.chain = result.catch(() => undefined);
    return result;
  }

  close(): void {
    this.z.close();
  }
}

/** Both directions of one connection. */
export class HeaderCodec {
  private readonly deflate = new ZlibContext(zlib.createDeflate({ dictionary: SPDY3_DICTIONARY, level: zlib.constants.Z_BEST_COMPRESSION }));
  private readonly inflate = new ZlibContext(zlib.createInflate({ dictionary: SPDY3_DICTIONARY, maxOutputLength: MAX_HEADER_BLOCK * 2 }));

  compress(headers: HeaderMap): Promise<Buffer> {
    return this.deflate.run(encodeHeaderBlock(headers));
  }

  async decompress(block: Buffer): Promise<HeaderMap> {
    return decodeHeaderBlock(await this.inflate.run(block));
  }

  close(): void {
    this.deflate.close();
    this.inflate.close();
  }
}
