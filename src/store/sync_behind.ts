/**
 * Write-behind durability for state on the hot path of a CRI call. Writes that use it skip their
 * own fsyncs (their rename still makes them atomic for readers and for a crash of the process);
 * this fsyncs the written files and their directories in one batch on the next turn of the event
 * loop, so they are on disk a few milliseconds later without the caller waiting for the disk.
 *
 * Meant for records of things a reboot wipes anyway (network namespaces, links, DHCP responders):
 * a power loss inside that window loses a record whose objects the same power loss destroyed. On a
 * filesystem that does not write a file's data before a rename over an older file (ext4 without
 * auto_da_alloc, for one) the older version can be lost too: the store sets such an empty file
 * aside on load, and the sandbox it described is gone with the reboot anyway.
 */
import { fsyncDir, fsyncFile } from './fsync.js';

export class SyncBehind {
  private files = new Set<string>();
  private dirs = new Set<string>();
  private running: Promise<void> | undefined;

  constructor(
    private readonly onError: (err: unknown, path: string) => void,
    private readonly sync: { file(path: string): Promise<void>; dir(path: string): Promise<void> } = REAL_FSYNC,
  ) {}

  /** Queues `dir` (after a rename or unlink in it) and, when given, the file written there. */
  add(dir: string, file?: string): void {
    this.dirs.add(dir);
    if (file !== undefined) this.files.add(file);
    this.schedule();
  }

  /** Resolves once everything queued so far is on disk (or its failure logged). */
  async flush(): Promise<void> {
    while (this.running) await this.running;
  }

  private schedule(): void {
    if (this.running) return;
    this.running = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.syncQueued())
      .finally(() => {
        this.running = undefined;
        if (this.files.size > 0 || this.dirs.size > 0) this.schedule();
      });
  }

  private async syncQueued(): Promise<void> {
    const files = [...this.files];
    const dirs = [...this.dirs];
    this.files.clear();
    this.dirs.clear();
    // Data before the names that point at it.
    await Promise.all(files.map((file) => this.guard(file, () => this.sync.file(file))));
    await Promise.all(dirs.map((dir) => this.guard(dir, () => this.sync.dir(dir))));
  }

  private async guard(path: string, sync: () => Promise<void>): Promise<void> {
    try {
      await sync();
    } catch (err) {
      // A file replaced or removed since it was queued has nothing left to make durable.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.onError(err, path);
    }
  }
}

/** The fsyncs SyncBehind does unless a test gives it others. */
export const REAL_FSYNC = { file: fsyncFile, dir: fsyncDir };
