import type { FileHandle } from 'node:fs/promises';

/**
 * Positional writes into a file whose pages are flushed to disk while more data arrives: after
 * every `syncEveryBytes` written a datasync starts in the background (one at a time), so the
 * fsync that makes the file durable at the end finds little left to write instead of the whole
 * file (the kernel's own writeback starts only at dirty_background_ratio, often GiBs later).
 */
export class SyncedFileWriter {
  private sinceSync = 0;
  private syncing: Promise<void> | undefined;
  private syncError: unknown;

  constructor(
    private readonly fh: FileHandle,
    private readonly syncEveryBytes = 64 * 1024 * 1024,
  ) {}

  /** Writes all of `data` at `position` (resuming after short writes). */
  readonly write = async (data: Buffer, position: number): Promise<void> => {
    let off = 0;
    while (off < data.length) {
      const { bytesWritten } = await this.fh.write(data, off, data.length - off, position + off);
      off += bytesWritten;
    }
    this.sinceSync += data.length;
    if (this.sinceSync >= this.syncEveryBytes && this.syncing === undefined) {
      this.sinceSync = 0;
      this.syncing = this.fh.datasync().then(
        () => {
          this.syncing = undefined;
        },
        (err: unknown) => {
          this.syncError ??= err;
          this.syncing = undefined;
        },
      );
    }
  };

  /** Waits for a background flush, then fsyncs the file: everything written is on disk. */
  async finish(): Promise<void> {
    await this.settled();
    if (this.syncError !== undefined) throw this.syncError;
    await this.fh.sync();
  }

  /** Resolves once no background flush is running (call before closing the file on failure). */
  async settled(): Promise<void> {
    while (this.syncing) await this.syncing;
  }
}
