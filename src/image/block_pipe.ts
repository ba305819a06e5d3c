import { createHash, type Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/**
 * A byte stream cut into fixed-size blocks of one SharedArrayBuffer ring, each block hashed with
 * sha256 and handed to an optional sink (e.g. a positional file write), both at once.
 *
 * Why: a pull hashes every byte it receives (the blob digest) and every byte it writes (the disk
 * digest). On the main thread those hashes serialise with HTTP, untar and stream bookkeeping.
 * Here the producer only copies each chunk into the ring (one memcpy); a worker thread hashes the
 * block while the sink writes the same memory from the libuv threadpool. The ring bounds memory
 * and gives backpressure: `write` returns a promise when every block is busy.
 *
 * `hashOn: 'main'` hashes on the calling thread (no worker start-up; for small streams).
 */

export interface BlockPipeOptions {
  blockBytes?: number;
  blocks?: number;
  hashOn: 'worker' | 'main';
  /** Receives every sealed block with its byte offset in the stream; blocks may be in flight together. */
  sink?: (block: Buffer, position: number) => Promise<void>;
}

export interface BlockPipeResult {
  sha256: string;
  bytes: number;
}

const DEFAULT_BLOCK_BYTES = 4 * 1024 * 1024;
const DEFAULT_BLOCKS = 4;

// Plain JS so it runs the same under tsx and from dist, with no loader in the worker.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const memory = new Uint8Array(workerData.sab);
const hash = createHash('sha256');
parentPort.on('message', (m) => {
  if (m.slot !== undefined) {
    hash.update(memory.subarray(m.offset, m.offset + m.length));
    parentPort.postMessage({ slot: m.slot });
  } else {
    parentPort.postMessage({ digest: hash.digest('hex') });
  }
});
`;

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class BlockPipe {
  private readonly blockBytes: number;
  private readonly memory: Buffer;
  private readonly free: number[] = [];
  /** Per slot: the worker still hashes it / the sink still holds it. */
  private readonly hashing: boolean[];
  private readonly sinking: boolean[];
  private readonly worker: Worker | undefined;
  private readonly mainHash: Hash | undefined;
  private current = -1;
  private fill = 0;
  private position = 0;
  private ended = false;
  private failure: unknown;
  private room: Waiter | undefined;
  private idle: (() => void) | undefined;
  private digest: { resolve: (hex: string) => void; reject: (err: unknown) => void } | undefined;
  private inFlight = 0;

  constructor(private readonly opts: BlockPipeOptions) {
    this.blockBytes = opts.blockBytes ?? DEFAULT_BLOCK_BYTES;
    const blocks = opts.blocks ?? DEFAULT_BLOCKS;
    const sab = opts.hashOn === 'worker' ? new SharedArrayBuffer(this.blockBytes * blocks) : new ArrayBuffer(this.blockBytes * blocks);
    this.memory = Buffer.from(sab);
    this.hashing = new Array<boolean>(blocks).fill(false);
    this.sinking = new Array<boolean>(blocks).fill(false);
    for (let i = 0; i < blocks; i++) this.free.push(i);
    if (opts.hashOn === 'worker') {
      const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], workerData: { sab } });
      worker.on('message', (m: { slot?: number; digest?: string }) => {
        if (m.slot !== undefined) {
          this.hashing[m.slot] = false;
          this.settle(m.slot);
        } else if (m.digest !== undefined) {
          this.digest?.resolve(m.digest);
        }
      });
      worker.on('error', (err) => this.workerGone(err));
      worker.on('exit', (code) => this.workerGone(new Error(`the hashing thread exited (code ${code})`)));
      this.worker = worker;
    } else {
      this.mainHash = createHash('sha256');
    }
  }

  /** Copies `chunk` in; returns a promise to wait for when the ring is full (undefined: go on). */
  write(chunk: Buffer): Promise<void> | undefined {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.ended) return Promise.reject(new Error('write after end'));
    let off = 0;
    while (off < chunk.length) {
      if (this.current < 0) {
        const slot = this.free.shift();
        if (slot === undefined) return this.roomFor(chunk.subarray(off));
        this.current = slot;
        this.fill = 0;
      }
      const n = Math.min(chunk.length - off, this.blockBytes - this.fill);
      chunk.copy(this.memory, this.current * this.blockBytes + this.fill, off, off + n);
      this.fill += n;
      off += n;
      if (this.fill === this.blockBytes) this.seal();
    }
    return undefined;
  }

  /** Seals the last block, waits for every block's hash and sink, and returns the digest. */
  async end(): Promise<BlockPipeResult> {
    if (this.failure !== undefined) throw this.failure;
    this.ended = true;
    if (this.current >= 0 && this.fill > 0) this.seal();
    else if (this.current >= 0) this.free.push(this.current);
    this.current = -1;
    await this.drained();
    if (this.failure !== undefined) throw this.failure;
    if (!this.worker) return { sha256: this.mainHash!.digest('hex'), bytes: this.position };
    const worker = this.worker;
    const hex = await new Promise<string>((resolve, reject) => {
      this.digest = { resolve, reject };
      worker.postMessage({ digest: true });
    });
    this.digest = undefined;
    this.failure = new Error('block pipe ended');
    await worker.terminate();
    return { sha256: hex, bytes: this.position };
  }

  /** Stops: nothing more goes out; resolves once no sink call is in flight and the worker is gone. */
  async destroy(): Promise<void> {
    this.fail(new Error('block pipe destroyed'));
    this.ended = true;
    await this.worker?.terminate();
    await this.drained();
  }

  private seal(): void {
    const slot = this.current;
    const length = this.fill;
    const position = this.position;
    this.current = -1;
    this.position += length;
    const offset = slot * this.blockBytes;
    this.inFlight++;
    if (this.worker) {
      this.hashing[slot] = true;
      this.worker.postMessage({ slot, offset, length });
    } else {
      this.mainHash!.update(this.memory.subarray(offset, offset + length));
    }
    if (this.opts.sink) {
      this.sinking[slot] = true;
      this.opts.sink(this.memory.subarray(offset, offset + length), position).then(
        () => {
          this.sinking[slot] = false;
          this.settle(slot);
        },
        (err: unknown) => {
          this.fail(err);
          this.sinking[slot] = false;
          this.settle(slot);
        },
      );
    }
    this.settle(slot);
  }

  /** A slot both consumers are done with goes back to the free list. */
  private settle(slot: number): void {
    if (this.hashing[slot] || this.sinking[slot] || this.free.includes(slot) || slot === this.current) return;
    this.inFlight--;
    this.free.push(slot);
    if (this.inFlight === 0 && this.idle) {
      const idle = this.idle;
      this.idle = undefined;
      idle();
    }
    const room = this.room;
    this.room = undefined;
    room?.resolve();
  }

  private async roomFor(rest: Buffer): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.room = { resolve, reject };
    });
    await this.write(rest);
  }

  /** Resolves when no block is out (failed hashes count as done, see workerGone). */
  private drained(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.idle = resolve;
    });
  }

  private workerGone(err: unknown): void {
    this.fail(err);
    for (let slot = 0; slot < this.hashing.length; slot++) {
      if (this.hashing[slot]) {
        this.hashing[slot] = false;
        this.settle(slot);
      }
    }
  }

  private fail(err: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    const room = this.room;
    this.room = undefined;
    room?.reject(err);
    this.digest?.reject(err);
  }
}
