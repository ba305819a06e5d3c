import type { FileHandle } from 'node:fs/promises';

/**
 * Appends a stream's chunks to a file in large vectored writes, one write in flight while the
 * next batch fills, and flushes the file to disk as it grows.
 *
 * Why: an http body arrives in socket-read sized chunks (16-64 KiB). Writing each one costs a
 * threadpool round trip; copying them into a bigger buffer costs a memcpy of every byte. Here the
 * chunks themselves are handed to one writev(2) per `batchBytes`, so the only copy is the kernel's.
 * After every `syncEveryBytes` a datasync starts in the background (one at a time), so the fsync
 * that makes the file durable at the end finds little left to write (the kernel's own writeback
 * starts only at dirty_background_ratio, often GiBs later).
 *
 * The chunks must not be changed after `append` (a socket's chunks are fresh buffers).
 */
export interface BatchedFileWriterOptions {
  batchBytes?: number;
  /** writev takes at most IOV_MAX (1024) buffers at once; stay well below. */
  batchBuffers?: number;
  syncEveryBytes?: number;
}

export class BatchedFileWriter {
  private readonly batchBytes: number;
  private readonly batchBuffers: number;
  private readonly syncEveryBytes: number;
  private batch: Buffer[] = [];
  private batchLength = 0;
  private position = 0;
  private writing: Promise<void> | undefined;
  private syncing: Promise<void> | undefined;
  private sinceSync = 0;
  private failure: { err: unknown } | undefined;

  constructor(
    private readonly fh: FileHandle,
    opts: BatchedFileWriterOptions = {},
  ) {
    this.batchBytes = opts.batchBytes ?? 4 * 1024 * 1024;
    this.batchBuffers = opts.batchBuffers ?? 256;
    this.syncEveryBytes = opts.syncEveryBytes ?? 64 * 1024 * 1024;
  }

  /** Bytes appended so far (written or still in the batch). */
  get bytes(): number {
    return this.position + this.batchLength;
  }

  /**
   * Adds `chunk`. Returns a promise to wait for before the next append when a full batch had to
   * wait for the write before it (backpressure); undefined: go on.
   */
  append(chunk: Buffer): Promise<void> | undefined {
    if (this.failure) return Promise.reject(this.failure.err);
    if (chunk.length === 0) return undefined;
    this.batch.push(chunk);
    this.batchLength += chunk.length;
    if (this.batchLength < this.batchBytes && this.batch.length < this.batchBuffers) return undefined;
    if (this.writing === undefined) {
      this.startWrite();
      return undefined;
    }
    return this.writing.then(() => {
      this.throwFailure();
      if (this.writing === undefined && this.batchLength > 0) this.startWrite();
    });
  }

  /** Writes what is left, waits for every write and flush, then fsyncs: everything is on disk. */
  async finish(): Promise<void> {
    await this.settled();
    this.throwFailure();
    if (this.batchLength > 0) {
      this.startWrite();
      await this.settled();
      this.throwFailure();
    }
    await this.fh.sync();
  }

  /** Resolves once no write or background flush is running (call before closing the file on failure). */
  async settled(): Promise<void> {
    while (this.writing || this.syncing) await (this.writing ?? this.syncing);
  }

  private throwFailure(): void {
    if (this.failure) throw this.failure.err;
  }

  private startWrite(): void {
    const buffers = this.batch;
    const position = this.position;
    const length = this.batchLength;
    this.batch = [];
    this.batchLength = 0;
    this.position += length;
    this.writing = this.writeAll(buffers, position).then(
      () => {
        this.writing = undefined;
        this.afterWrite(length);
      },
      (err: unknown) => {
        this.failure ??= { err };
        this.writing = undefined;
      },
    );
  }

  /** writev until every byte is written (a short write resumes where it stopped). */
  private async writeAll(buffers: Buffer[], position: number): Promise<void> {
    let rest = buffers;
    let at = position;
    while (rest.length > 0) {
      const { bytesWritten } = await this.fh.writev(rest, at);
      at += bytesWritten;
      let skip = bytesWritten;
      const next: Buffer[] = [];
      for (const b of rest) {
        if (skip >= b.length) {
          skip -= b.length;
          continue;
        }
        next.push(skip > 0 ? b.subarray(skip) : b);
        skip = 0;
      }
      if (bytesWritten === 0 && next.length > 0) throw new Error('writev wrote nothing');
      rest = next;
    }
  }

  private afterWrite(length: number): void {
    this.sinceSync += length;
    if (this.sinceSync < this.syncEveryBytes || this.syncing !== undefined) return;
    this.sinceSync = 0;
    this.syncing = this.fh.datasync().then(
      () => {
        this.syncing = undefined;
      },
      (err: unknown) => {
        this.failure ??= { err };
        this.syncing = undefined;
      },
    );
  }
}
