/**
 * Fixed-size blocks of one memory area that a producer fills in order and hands out whole, and
 * that come back once their consumers are done: the memory and the backpressure of BlockPipe
 * and of the registry's LayerUnpacker. Shared memory lets a worker thread read a block in place.
 */

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class BlockRing {
  /** The area itself (a SharedArrayBuffer when shared), e.g. for a worker's workerData. */
  readonly buffer: SharedArrayBuffer | ArrayBuffer;
  private readonly memory: Buffer;
  private readonly free: number[] = [];
  private current = -1;
  private fill = 0;
  private failure: unknown;
  private room: Waiter | undefined;

  /** `onSeal` gets each full block (and the last, partial one at `flush`): its slot and length. */
  constructor(
    readonly blockBytes: number,
    blocks: number,
    shared: boolean,
    private readonly onSeal: (slot: number, length: number) => void,
  ) {
    this.buffer = shared ? new SharedArrayBuffer(blockBytes * blocks) : new ArrayBuffer(blockBytes * blocks);
    this.memory = Buffer.from(this.buffer);
    for (let i = 0; i < blocks; i++) this.free.push(i);
  }

  /** Copies `chunk` in, sealing every block it fills; returns a promise to wait for when no block is free (undefined: go on). */
  write(chunk: Buffer): Promise<void> | undefined {
    if (this.failure !== undefined) return Promise.reject(this.failure);
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

  /** Seals the partly filled block, if any; an empty one goes back to the free list. */
  flush(): void {
    if (this.current < 0) return;
    if (this.fill > 0) this.seal();
    else {
      this.free.push(this.current);
      this.current = -1;
    }
  }

  /** The first `length` bytes of `slot`, in place. */
  block(slot: number, length: number): Buffer {
    const offset = slot * this.blockBytes;
    return this.memory.subarray(offset, offset + length);
  }

  /** Whether `slot` was sealed and not given back yet. */
  isOut(slot: number): boolean {
    return slot !== this.current && !this.free.includes(slot);
  }

  /** Gives a sealed block back; a writer waiting for room goes on. */
  release(slot: number): void {
    this.free.push(slot);
    const room = this.room;
    this.room = undefined;
    room?.resolve();
  }

  /** Fails a writer waiting for room and every later write. */
  fail(err: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    const room = this.room;
    this.room = undefined;
    room?.reject(err);
  }

  private seal(): void {
    const slot = this.current;
    const length = this.fill;
    this.current = -1;
    this.onSeal(slot, length);
  }

  private async roomFor(rest: Buffer): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.room = { resolve, reject };
    });
    await this.write(rest);
  }
}
