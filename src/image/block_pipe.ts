import { createHash, type Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { BlockRing } from './block_ring.js';

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

export class BlockPipe {
  private readonly ring: BlockRing;
  /** Per slot: the worker still hashes it / the sink still holds it. */
  private readonly hashing: boolean[];
  private readonly sinking: boolean[];
  private readonly worker: Worker | undefined;
  private readonly mainHash: Hash | undefined;
  private position = 0;
  private ended = false;
  private failure: unknown;
  private idle: (() => void) | undefined;
  private digest: { resolve: (hex: string) => void; reject: (err: unknown) => void } | undefined;
  private inFlight = 0;

  constructor(private readonly opts: BlockPipeOptions) {
    const blocks = opts.blocks ?? DEFAULT_BLOCKS;
    this.ring = new BlockRing(opts.blockBytes ?? DEFAULT_BLOCK_BYTES, blocks, opts.hashOn === 'worker', (slot, length) => this.seal(slot, length));
    this.hashing = new Array<boolean>(blocks).fill(false);
    this.sinking = new Array<boolean>(blocks).fill(false);
    if (opts.hashOn === 'worker') {
      const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], workerData: { sab: this.ring.buffer } });
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
    return this.ring.write(chunk);
  }

  /** Seals the last block, waits for every block's hash and sink, and returns the digest. */
  async end(): Promise<BlockPipeResult> {
    if (this.failure !== undefined) throw this.failure;
    this.ended = true;
    this.ring.flush();
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

  private seal(slot: number, length: number): void {
    const position = this.position;
    this.position += length;
    this.inFlight++;
    if (this.worker) {
      this.hashing[slot] = true;
      this.worker.postMessage({ slot, offset: slot * this.ring.blockBytes, length });
    } else {
      this.mainHash!.update(this.ring.block(slot, length));
    }
    if (this.opts.sink) {
      this.sinking[slot] = true;
      this.opts.sink(this.ring.block(slot, length), position).then(
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
    if (this.hashing[slot] || this.sinking[slot] || !this.ring.isOut(slot)) return;
    this.inFlight--;
    if (this.inFlight === 0 && this.idle) {
      const idle = this.idle;
      this.idle = undefined;
      idle();
    }
    this.ring.release(slot);
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
    this.ring.fail(err);
    this.digest?.reject(err);
  }
}
