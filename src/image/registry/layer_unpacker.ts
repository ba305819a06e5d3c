import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { BlockPipe } from '../block_pipe.js';
import { BlockRing } from '../block_ring.js';

/**
 * Unpacks one layer blob in a worker thread: the blob's sha256, gunzip (zlib on the threadpool),
 * the tar parser, and for each file the caller wants the sha256 and the writes into the file
 * descriptor the caller opened. The calling thread only receives HTTP and copies each chunk into
 * a SharedArrayBuffer ring (one memcpy of the compressed bytes).
 *
 * Why a worker: a gzip layer of a 1 GiB disk allocates 1 GiB of inflate output buffers. On the
 * main isolate every few tens of MiB of such external memory set off a full mark-compact of the
 * daemon's heap (~100 of them per GiB, measured ~0.9 CPU s on the main thread plus ~1 s on V8's
 * helper threads), and the hashes, tar parsing and stream bookkeeping serialised with the HTTP
 * receive. In the worker's small isolate those collections are cheap and off the main thread.
 *
 * Entry decisions stay with the caller (its DiskTree): the worker asks for each tar header and
 * waits for a file descriptor (extract) or none (skip), and reports each written file's sha256
 * and size, again waiting for the caller (which fsyncs and records it) before the next entry.
 * Files are written with synchronous positional writes, so once the worker has exited no write
 * of it is in flight and the caller may close and remove its files.
 */

export interface TarHeader {
  name: string;
  type: string | null;
  size: number;
}

export interface LayerUnpackerOptions {
  gzip: boolean;
  /** The blob's announced size (sizes the ring; the caller enforces it). */
  blobBytes: number;
  /** More unpacked (tar) bytes than this fail the layer (a compression bomb). */
  maxUnpackedBytes: number;
  /** Where to write the entry: a file descriptor, or undefined to skip it. May throw to stop. */
  onEntry: (header: TarHeader) => Promise<number | undefined>;
  /**
   * The entry written to the last descriptor: its sha256 (hex) and size. Aligned zero runs were
   * left as holes: the caller sets the file's length to `bytes`.
   */
  onFile: (file: { sha256: string; bytes: number }) => Promise<void>;
  /** Bytes written so far into the current file (every `reportEveryBytes`). */
  onWritten?: (bytes: number) => void;
  reportEveryBytes?: number;
  /** Called once at the first failure (e.g. to stop the download feeding it). */
  onFailure?: (err: unknown) => void;
}

/** Why the worker failed: `code` is zlib's (`Z_…`) or the system's (`ENOSPC`…); `limit`: too many unpacked bytes. */
export class UnpackFailure extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    readonly limit: boolean,
  ) {
    super(message);
  }
}

export const UNPACK_BLOCK_BYTES = 1024 * 1024;
const MAX_BLOCKS = 8;
/** Blobs at least this large are hashed in a thread of their own (its start costs ~20 ms). */
export const HASH_WORKER_MIN_BYTES = 16 * 1024 * 1024;
/** The threadpool has 4 threads by default; zlib needs one of them. */
const MAX_WRITES_IN_FLIGHT = 3;
/** Aligned all-zero runs of this size are not written (holes); smaller ones are. */
export const ZERO_RUN_BYTES = 64 * 1024;
/** zlib output per call: larger means fewer callbacks (measured: 64 KiB 0.78, 256 KiB 0.57, 1 MiB 0.49 CPU s per GiB). */
const INFLATE_CHUNK_BYTES = 1024 * 1024;

// Plain JS so it runs the same under tsx and from dist, with no loader in the worker.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { createGunzip } = require('node:zlib');
const { write } = require('node:fs');
const { Transform, Writable, pipeline } = require('node:stream');
const tar = require(workerData.tarStream);
const { sab, blockBytes, gzip, maxUnpackedBytes, inflateChunkBytes, reportEveryBytes, maxWrites, zeroRunBytes } = workerData;
const memory = Buffer.from(sab);
// Positional writes run on the threadpool while this thread hashes the next chunk; each holds
// its chunk until written. (A worker that exits first waits for its pending requests.)
const writing = new Set();
let writeError;
// Zero runs are left as holes in the fresh file (the caller sets its length at the end): a raw
// disk is largely empty, and a hole costs neither the page-cache copy nor the flush.
const zeros = Buffer.alloc(zeroRunBytes);
function dataRuns(chunk, position) {
  const runs = [];
  let runStart = -1;
  let off = 0;
  while (off < chunk.length) {
    const next = Math.min(chunk.length, off + zeroRunBytes - ((position + off) % zeroRunBytes));
    if (next - off === zeroRunBytes && zeros.equals(chunk.subarray(off, next))) {
      if (runStart >= 0) { runs.push([runStart, off]); runStart = -1; }
    } else if (runStart < 0) {
      runStart = off;
    }
    off = next;
  }
  if (runStart >= 0) runs.push([runStart, chunk.length]);
  return runs;
}
function writeAll(fd, chunk, position) {
  return new Promise((resolve, reject) => {
    const step = (off) => write(fd, chunk, off, chunk.length - off, position + off, (err, n) => {
      if (err) reject(err);
      else if (off + n < chunk.length) step(off + n);
      else resolve();
    });
    step(0);
  });
}
const extract = tar.extract();
let failed = false;
function fail(err) {
  if (failed) return;
  failed = true;
  parentPort.postMessage({ error: { message: String((err && err.message) || err), code: err && typeof err.code === 'string' ? err.code : undefined, limit: !!(err && err.limit) } });
}
let reply;
function ask(msg) {
  return new Promise((resolve) => { reply = resolve; parentPort.postMessage(msg); });
}
const feed = new Writable({
  write(chunk, _enc, cb) { if (extract.write(chunk)) cb(); else extract.once('drain', () => cb()); },
  final(cb) { extract.end(); cb(); },
});
let unpacked = 0;
const limit = new Transform({
  transform(chunk, _enc, cb) {
    unpacked += chunk.length;
    if (unpacked > maxUnpackedBytes) cb(Object.assign(new Error('unpacks to more than ' + maxUnpackedBytes + ' bytes'), { limit: true }));
    else cb(null, chunk);
  },
});
const input = gzip ? createGunzip({ chunkSize: inflateChunkBytes }) : limit;
const piped = new Promise((resolve, reject) => {
  const stages = gzip ? [input, limit, feed] : [limit, feed];
  pipeline(...stages, (err) => {
    if (err) { fail(err); extract.destroy(err); reject(err); } else resolve();
  });
});
async function entries() {
  for await (const entry of extract) {
    const h = entry.header;
    const fd = await ask({ entry: { name: h.name, type: h.type == null ? null : h.type, size: h.size || 0 } });
    if (fd === undefined) { entry.resume(); continue; }
    const hash = createHash('sha256');
    let bytes = 0;
    let reported = 0;
    for await (const chunk of entry) {
      hash.update(chunk);
      for (const [start, end] of dataRuns(chunk, bytes)) {
        while (writing.size >= maxWrites) await Promise.race(writing);
        if (writeError) throw writeError;
        const w = writeAll(fd, chunk.subarray(start, end), bytes + start).then(() => { writing.delete(w); }, (err) => { writing.delete(w); writeError = writeError || err; });
        writing.add(w);
      }
      bytes += chunk.length;
      if (bytes - reported >= reportEveryBytes) { reported = bytes; parentPort.postMessage({ written: bytes }); }
    }
    await Promise.all(writing);
    if (writeError) throw writeError;
    await ask({ file: { sha256: hash.digest('hex'), bytes } });
  }
}
const listed = entries();
listed.catch(fail);
Promise.all([piped, listed]).then(() => parentPort.postMessage({ done: true }), fail);
parentPort.on('message', (m) => {
  if (m.block !== undefined) {
    const view = memory.subarray(m.block * blockBytes, m.block * blockBytes + m.length);
    // zlib reads the ring in place; the tar parser keeps references to what it is given, so an
    // uncompressed block is copied out first. Either way the slot goes back once consumed.
    input.write(gzip ? view : Buffer.from(view), () => parentPort.postMessage({ free: m.block }));
  } else if (m.end) {
    input.end();
  } else if (m.reply) {
    const r = reply;
    reply = undefined;
    r(m.reply.fd);
  }
});
`;

let tarStreamPath: string | undefined;

export class LayerUnpacker {
  private readonly worker: Worker;
  /** The compressed bytes on their way to the worker, read there in place. */
  private readonly ring: BlockRing;
  /** The blob's sha256, on a thread of its own for large blobs (one more memcpy, one more core). */
  private readonly blobHash: BlockPipe;
  private failure: unknown;
  private finished: { resolve: () => void; reject: (err: unknown) => void } | undefined;
  private done = false;
  /** Entry and file messages are handled one after the other, in the worker's order. */
  private chain: Promise<void> = Promise.resolve();
  private exited: Promise<void>;

  constructor(private readonly opts: LayerUnpackerOptions) {
    const blocks = Math.min(MAX_BLOCKS, Math.max(2, Math.ceil(opts.blobBytes / UNPACK_BLOCK_BYTES)));
    this.ring = new BlockRing(UNPACK_BLOCK_BYTES, blocks, true, (slot, length) => this.worker.postMessage({ block: slot, length }));
    this.blobHash = new BlockPipe({ hashOn: opts.blobBytes >= HASH_WORKER_MIN_BYTES ? 'worker' : 'main' });
    tarStreamPath ??= createRequire(import.meta.url).resolve('tar-stream');
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      execArgv: [],
      workerData: {
        sab: this.ring.buffer,
        blockBytes: UNPACK_BLOCK_BYTES,
        gzip: opts.gzip,
        maxUnpackedBytes: opts.maxUnpackedBytes,
        inflateChunkBytes: INFLATE_CHUNK_BYTES,
        reportEveryBytes: opts.reportEveryBytes ?? 64 * 1024 * 1024,
        maxWrites: MAX_WRITES_IN_FLIGHT,
        zeroRunBytes: ZERO_RUN_BYTES,
        tarStream: tarStreamPath,
      },
    });
    this.worker.on('message', (m: WorkerMessage) => this.onMessage(m));
    this.worker.on('error', (err) => this.fail(err));
    this.exited = new Promise((resolve) => {
      this.worker.on('exit', (code) => {
        this.fail(new Error(`the unpacking thread exited (code ${code})`));
        resolve();
      });
    });
  }

  /** Copies `chunk` into the ring; returns a promise to wait for when the ring is full (undefined: go on). */
  write(chunk: Buffer): Promise<void> | undefined {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const hashing = this.blobHash.write(chunk);
    const copying = this.ring.write(chunk);
    if (hashing && copying) return Promise.all([hashing, copying]).then(() => undefined);
    return hashing ?? copying;
  }

  /** Ends the blob; resolves with its sha256 (hex) once every entry is unpacked and reported. */
  async end(): Promise<string> {
    if (this.failure !== undefined) throw this.failure;
    this.ring.flush();
    this.worker.postMessage({ end: true });
    await new Promise<void>((resolve, reject) => {
      if (this.failure !== undefined) reject(this.failure);
      else if (this.done) resolve();
      else this.finished = { resolve, reject };
    });
    await this.chain;
    return (await this.blobHash.end()).sha256;
  }

  /** Stops the worker; resolves once it has exited (no write of it is in flight any more). */
  async close(): Promise<void> {
    this.fail(new Error('layer unpacker closed'));
    await this.worker.terminate();
    await this.exited;
    await this.blobHash.destroy();
    await this.chain.catch(() => undefined);
  }

  get failed(): unknown {
    return this.failure;
  }

  private onMessage(m: WorkerMessage): void {
    if (m.free !== undefined) {
      this.ring.release(m.free);
    } else if (m.written !== undefined) {
      this.opts.onWritten?.(m.written);
    } else if (m.entry !== undefined) {
      const header = m.entry;
      this.chain = this.chain.then(async () => {
        if (this.failure !== undefined) return;
        const fd = await this.opts.onEntry(header);
        this.worker.postMessage({ reply: { fd } });
      });
      this.chain.catch((err: unknown) => this.fail(err));
    } else if (m.file !== undefined) {
      const file = m.file;
      this.chain = this.chain.then(async () => {
        if (this.failure !== undefined) return;
        await this.opts.onFile(file);
        this.worker.postMessage({ reply: {} });
      });
      this.chain.catch((err: unknown) => this.fail(err));
    } else if (m.done !== undefined) {
      this.done = true;
      this.finished?.resolve();
    } else if (m.error !== undefined) {
      this.fail(new UnpackFailure(m.error.message, m.error.code, m.error.limit));
    }
  }

  private fail(err: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    this.ring.fail(err);
    this.finished?.reject(err);
    void this.worker.terminate();
    this.opts.onFailure?.(err);
  }
}

interface WorkerMessage {
  free?: number;
  written?: number;
  entry?: TarHeader;
  file?: { sha256: string; bytes: number };
  done?: true;
  error?: { message: string; code: string | undefined; limit: boolean };
}
