/**
 * Pumps a VM's serial console into its CRI container log.
 *
 * QEMU appends the guest's console bytes to a raw file in vmlet's state dir; kubelet reads the
 * container log at the CRI log_path in the CRI log format. A ConsoleLogPump follows the raw file
 * (fs.watch for promptness, one shared poll timer as the safety net for missed or impossible
 * watches), converts the bytes (src/console/cri_log_format.ts) and appends the entries to the log.
 *
 * Delivery: after every batch the log bytes are written first and then the read offset (plus the
 * unfinished line) is saved atomically. A clean stop/start therefore neither loses nor repeats
 * anything, including console output written while vmlet was down. A crash between the two steps
 * can repeat at most the last batch; it never loses one. Log writes are not fsynced (like
 * containerd), so a power loss may drop the last entries of the log file itself.
 *
 * Timestamps are the time vmlet read the bytes, not when the guest wrote them (the console carries
 * no times); output read after a restart is stamped with the catch-up time.
 */
import { constants as fsConstants, lstat as lstatCallback, watch, type BigIntStats, type FSWatcher } from 'node:fs';
import { lstat, mkdir, open, readFile, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute } from 'node:path';
import { performance } from 'node:perf_hooks';
import { FailedPreconditionError, InternalError, InvalidArgumentError, VmletError, errorText } from '../errors.js';
import type { Logger } from '../log.js';
import { writeFileAtomic } from '../store/atomic_file.js';
import {
  CriLineSplitter,
  DEFAULT_MAX_LINE_BYTES,
  formatCriEntries,
  formatRfc3339NanoUtc,
  wallClockNs,
  type CriLogEntry,
} from './cri_log_format.js';
import { decodeConsoleLogState, encodeConsoleLogState, identityOf, sameIdentity, type ConsoleLogState, type RawFileIdentity } from './log_pump_state.js';
import { joinPoll } from './shared_poll.js';

export const DEFAULT_POLL_MS = 1000;
export const DEFAULT_PARTIAL_FLUSH_MS = 1000;
export const DEFAULT_BATCH_DELAY_MS = 20;
export const DEFAULT_READ_CHUNK_BYTES = 256 * 1024;
/** kubelet creates pod log directories 0755; containerd creates container logs 0640. */
const LOG_DIR_MODE = 0o755;
const LOG_FILE_MODE = 0o640;
/** virtlogd's backups of the raw console looked at: <raw>.0 … (virtlogd.conf max_backups, default 3). */
const MAX_ROTATED_BACKUPS = 16;
/** Listings of the backups in one catch-up (each file read, or a rotation racing the reads). */
const MAX_ROTATION_ROUNDS = 4 * MAX_ROTATED_BACKUPS;
/** Upper bound for a saved unfinished line; anything bigger is not a state this module wrote. */

export interface ConsoleLogPumpOptions {
  /** QEMU's append-only serial console file (`<serial type='file'>`). */
  rawPath: string;
  /** Absolute CRI container log path (sandbox log_directory joined with the container log_path). */
  logPath: string;
  /** Where the read offset and the unfinished line survive a vmlet restart. */
  statePath: string;
  logger: Logger;
  /** Interval of the shared poll that catches what fs.watch misses. */
  pollMs?: number;
  /** An unfinished line is written as a P entry once it has waited this long for its newline. */
  partialFlushMs?: number;
  /** Longest entry content; longer lines become P… F entries (containerd's default is 16 KiB). */
  maxLineBytes?: number;
  /** Watch events are gathered for this long into one read/write/save batch. */
  batchDelayMs?: number;
  /** Largest single read from the raw file (one batch). */
  readChunkBytes?: number;
  /** Wall clock in epoch nanoseconds, for the entry timestamps (injectable for tests). */
  clock?: () => bigint;
}

export interface ConsoleLogStopOptions {
  /**
   * Keep an unfinished line in the saved state instead of writing it as a P entry, so a later pump
   * continues it (vmlet shutting down while the VM keeps running). Default: write it out
   * (the container ended; its last words belong in the log).
   */
  keepPartial?: boolean;
}

export type ConsoleLogPumpPhase = 'new' | 'running' | 'stopping' | 'stopped';

export interface ConsoleLogPumpStats {
  phase: ConsoleLogPumpPhase;
  /** Bytes of the current raw file consumed so far. */
  rawOffset: number;
  /** Bytes of an unfinished line held back. */
  pendingBytes: number;
  bytesRead: number;
  entriesWritten: number;
  logBytesWritten: number;
  stateSaves: number;
  /** The last background error (a missing log directory, an unreadable raw file, ...). */
  lastError?: string;
}

function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function positiveInt(name: string, value: number | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
  return value;
}

function asVmletError(err: unknown, what: string): VmletError {
  return err instanceof VmletError ? err : new InternalError(`${what}: ${errorText(err)}`, { cause: err });
}

export class ConsoleLogPump {
  private readonly rawPath: string;
  private readonly logPath: string;
  private readonly statePath: string;
  private readonly logger: Logger;
  private readonly pollMs: number;
  private readonly partialFlushMs: number;
  private readonly batchDelayMs: number;
  private readonly readChunkBytes: number;
  private readonly clock: () => bigint;
  private splitter: CriLineSplitter;

  private phase: ConsoleLogPumpPhase = 'new';
  /** The raw file being read; its identity is what `offset` refers to. */
  private raw: { fh: FileHandle; id: RawFileIdentity } | undefined;
  /** Identity `offset` refers to before the raw file is open (from the saved state). */
  private rawId: RawFileIdentity | null = null;
  private offset = 0;
  private log: FileHandle | undefined;
  /** Formatted entries not yet (fully) in the log file; retried before anything new is read. */
  private outbox: Buffer[] = [];
  private stateDirty = false;

  private watcher: FSWatcher | undefined;
  private leavePoll: (() => void) | undefined;
  private batchTimer: NodeJS.Timeout | undefined;
  private partialTimer: NodeJS.Timeout | undefined;
  /** performance.now() when the current unfinished line became flushable. */
  private pendingSince: number | undefined;

  /** Every file operation runs in this chain, one at a time. */
  private queue: Promise<void> = Promise.resolve();
  private drainQueued = false;
  private polling = false;
  private stopping: Promise<void> | undefined;

  private counters = { bytesRead: 0, entriesWritten: 0, logBytesWritten: 0, stateSaves: 0 };
  private lastError: string | undefined;

  constructor(options: ConsoleLogPumpOptions) {
    for (const [name, path] of [
      ['rawPath', options.rawPath],
      ['logPath', options.logPath],
      ['statePath', options.statePath],
    ] as const) {
      if (typeof path !== 'string' || !isAbsolute(path) || path.includes('\0')) {
        throw new InvalidArgumentError(`${name} must be an absolute path`);
      }
    }
    this.rawPath = options.rawPath;
    this.logPath = options.logPath;
    this.statePath = options.statePath;
    this.logger = options.logger;
    this.pollMs = positiveInt('pollMs', options.pollMs, DEFAULT_POLL_MS);
    this.partialFlushMs = positiveInt('partialFlushMs', options.partialFlushMs, DEFAULT_PARTIAL_FLUSH_MS);
    this.batchDelayMs = positiveInt('batchDelayMs', options.batchDelayMs, DEFAULT_BATCH_DELAY_MS, 0);
    this.readChunkBytes = positiveInt('readChunkBytes', options.readChunkBytes, DEFAULT_READ_CHUNK_BYTES, 64);
    const maxLineBytes = positiveInt('maxLineBytes', options.maxLineBytes, DEFAULT_MAX_LINE_BYTES, 4);
    this.splitter = new CriLineSplitter(maxLineBytes);
    this.clock = options.clock ?? wallClockNs;
  }

  /**
   * Loads the saved position, opens (creating) the log file and copies everything the raw file
   * holds beyond that position, then keeps following it. A missing raw file is fine: QEMU creates
   * it when the domain starts, and the pump picks it up then.
   */
  async start(): Promise<void> {
    if (this.phase !== 'new') throw new FailedPreconditionError(`console log pump for ${this.logPath} was already started`);
    this.phase = 'running';
    try {
      await this.enqueue(async () => {
        await this.loadState();
        await this.openLog();
        await this.drain();
      });
    } catch (err) {
      this.phase = 'stopped';
      await this.closeFiles();
      throw asVmletError(err, `starting the console log for ${this.logPath}`);
    }
    if (this.phase !== 'running') return; // stop() was called while starting
    this.leavePoll = joinPoll(this.pollMs, () => this.pollTick());
    this.armPartialTimer();
  }

  /**
   * Reads what is left, writes it (the unfinished line too unless keepPartial), saves the state
   * and closes the files. Safe to call more than once.
   */
  async stop(options: ConsoleLogStopOptions = {}): Promise<void> {
    if (this.phase === 'new') {
      this.phase = 'stopped';
      return;
    }
    if (this.stopping !== undefined) return this.stopping;
    if (this.phase === 'stopped') return;
    this.phase = 'stopping';
    this.leavePoll?.();
    this.leavePoll = undefined;
    this.clearTimers();
    this.watcher?.close();
    this.watcher = undefined;
    this.stopping = this.enqueue(async () => {
      let failure: unknown;
      try {
        await this.drain();
      } catch (err) {
        failure = err;
      }
      try {
        if (options.keepPartial !== true) this.emit(this.splitter.flushAll());
        await this.commit();
      } catch (err) {
        failure ??= err;
      } finally {
        await this.closeFiles();
        this.phase = 'stopped';
      }
      if (failure !== undefined) throw asVmletError(failure, `stopping the console log for ${this.logPath}`);
    });
    return this.stopping;
  }

  /**
   * CRI ReopenContainerLog: kubelet renamed the log file to rotate it; close ours and open (create)
   * logPath again, so new entries go to a fresh file and the rotated one keeps the old ones.
   */
  async reopen(): Promise<void> {
    if (this.phase !== 'running') throw new FailedPreconditionError(`console log pump for ${this.logPath} is not running`);
    await this.enqueue(async () => {
      await this.closeLog();
      try {
        await this.openLog();
      } catch (err) {
        throw asVmletError(err, `reopening the container log ${this.logPath}`);
      }
    });
    this.requestDrain();
  }

  stats(): ConsoleLogPumpStats {
    return {
      phase: this.phase,
      rawOffset: this.offset,
      pendingBytes: this.splitter.pending.length,
      ...this.counters,
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
    };
  }

  private enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.queue.then(task);
    this.queue = run.catch(() => {});
    return run;
  }

  /** Schedules one drain; any number of requests before it runs collapse into it. */
  private requestDrain(): void {
    if (this.phase !== 'running' || this.drainQueued) return;
    this.drainQueued = true;
    this.enqueue(async () => {
      this.drainQueued = false;
      if (this.phase !== 'running') return;
      await this.drain();
      this.lastError = undefined;
      this.armPartialTimer();
    }).catch((err) => this.reportBackground(err));
  }

  /**
   * The shared poll's check: one lstat, and a drain only if the file changed. Kept off the
   * promise queue because it runs for every pump every poll interval.
   */
  private pollTick(): void {
    if (this.phase !== 'running' || this.drainQueued || this.polling) return;
    const raw = this.raw;
    if (raw === undefined || this.watcher === undefined) {
      this.requestDrain();
      return;
    }
    this.polling = true;
    lstatCallback(this.rawPath, { bigint: true }, (err, st) => {
      this.polling = false;
      if (err !== null || !sameIdentity(identityOf(st), raw.id) || st.size !== BigInt(this.offset)) this.requestDrain();
    });
  }

  private onRawEvent(): void {
    if (this.phase !== 'running' || this.batchTimer !== undefined) return;
    this.batchTimer = setTimeout(() => {
      this.batchTimer = undefined;
      this.requestDrain();
    }, this.batchDelayMs);
    this.batchTimer.unref();
  }

  /** Logs a background failure once per distinct message; the poll keeps retrying. */
  private reportBackground(err: unknown): void {
    const text = errorText(err);
    if (text !== this.lastError) this.logger.warn({ err, logPath: this.logPath }, 'console log pump failed; will retry');
    this.lastError = text;
  }

  private async loadState(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.statePath, 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return;
      throw err;
    }
    let state: ConsoleLogState;
    try {
      state = decodeConsoleLogState(text);
    } catch (err) {
      // Only this module writes the file, atomically; if it is unreadable anyway, repeating the
      // console from the start is better than silently dropping it.
      this.logger.warn({ err, statePath: this.statePath }, 'ignoring unreadable console log state; reading the console from its start');
      return;
    }
    this.rawId = state.raw;
    this.offset = state.offset;
    // Restored bytes go through the splitter like new ones, so the line limit holds for them too.
    this.emit(this.splitter.push(state.pending));
  }

  /**
   * Copies everything new from the raw file to the log. Notices a replaced or truncated raw file
   * (and then starts over at 0 after finishing the old file) and a vanished one (keeps reading
   * the open descriptor, which QEMU may still be writing to).
   */
  private async drain(): Promise<void> {
    await this.flushOutbox();
    let st: BigIntStats | null;
    try {
      st = await lstat(this.rawPath, { bigint: true });
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
      st = null;
    }
    if (this.raw !== undefined && (st === null || !sameIdentity(identityOf(st), this.raw.id))) {
      await this.readToEnd(this.raw.fh);
      if (st === null) return;
      const finished = this.raw.id;
      await this.closeRaw();
      // virtlogd renamed it to <raw>.0 (rotation): the backups newer than it come first.
      if (!(await this.catchUpRotated(finished))) this.restartAtZero('raw console file was replaced');
      this.rawId = null; // whatever is at the path now is read from its start
    }
    if (st === null) return;
    if (this.raw === undefined) {
      // The saved position may be in a file rotated away while no pump ran (vmlet down).
      if (this.rawId !== null && !sameIdentity(this.rawId, identityOf(st)) && (await this.catchUpRotated(this.rawId))) {
        this.rawId = null;
      }
      await this.openRaw();
    } else {
      if (this.watcher === undefined) this.watchRaw();
      if (st.size === BigInt(this.offset)) return; // idle: the common case, one lstat per poll
    }
    const raw = this.raw as { fh: FileHandle } | undefined;
    if (raw === undefined) return;
    const size = (await raw.fh.stat({ bigint: true })).size;
    if (size < BigInt(this.offset)) this.restartAtZero('raw console file shrank');
    await this.readToEnd(raw.fh, Number(size) - this.offset);
  }

  private async openRaw(): Promise<void> {
    // O_NOFOLLOW: never copy whatever a planted symlink points at into a log users can read.
    // O_NONBLOCK: a FIFO planted at the path must not hang the open.
    const fh = await open(this.rawPath, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
    let st: BigIntStats;
    try {
      st = await fh.stat({ bigint: true });
      if (!st.isFile()) throw new InternalError(`raw console ${this.rawPath} is not a regular file`);
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
    const id = identityOf(st);
    if (this.rawId !== null && !sameIdentity(this.rawId, id)) this.restartAtZero('raw console file is not the one last read');
    this.rawId = id;
    this.stateDirty = true;
    this.raw = { fh, id };
    // Watch before reading, so bytes written after the read below still raise an event.
    this.watchRaw();
  }

  private watchRaw(): void {
    this.watcher?.close();
    this.watcher = undefined;
    try {
      const w = watch(this.rawPath, { persistent: false }, () => this.onRawEvent());
      w.on('error', () => {
        w.close();
        if (this.watcher === w) this.watcher = undefined;
      });
      this.watcher = w;
    } catch {
      // The shared poll still covers this file; the next drain tries to watch again.
    }
  }

  /**
   * virtlogd caps the console capture (virtlogd.conf max_size, default 2 MiB) by renaming it:
   * <raw>.(n-2) → <raw>.(n-1), …, <raw> → <raw>.0 (max_backups files, default 3; the oldest is
   * deleted), then a fresh <raw>. When the file `id` (read up to `offset`) is one of those
   * backups, this reads its rest and every newer backup in order, so the log stays complete
   * across rotations, also those that happened while no pump ran. Returns false when `id` is not
   * among the backups (replaced, or rotated out of the last backup: those bytes are gone).
   * Afterwards offset 0 of the current <raw> is next. A line split by a rotation stays one line.
   */
  private async catchUpRotated(id: RawFileIdentity): Promise<boolean> {
    let current = id;
    for (let round = 0; round < MAX_ROTATION_ROUNDS; round++) {
      const backups = await this.rotatedBackups();
      const at = backups.findIndex((b) => sameIdentity(b.id, current));
      if (at < 0) {
        if (backups.length === 0) {
          if (round === 0) return false; // replaced, not rotated (or virtlogd keeps no backups)
          break;
        }
        // Rotated out of the last backup before it was (fully) read: that output is gone. Every
        // backup left is newer; the oldest goes on, as a new line.
        this.logger.warn({ rawPath: this.rawPath, offset: this.offset }, 'console output rotated away by virtlogd before it was read; some is lost');
        this.restartAtZero('raw console file was rotated away');
        current = backups[0]!.id;
        this.rawId = current;
        continue;
      }
      const backup = backups[at]!;
      if (!sameIdentity(this.rawId ?? current, current)) this.offset = 0;
      this.rawId = current;
      this.stateDirty = true;
      const fh = await open(backup.path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
      try {
        const st = await fh.stat({ bigint: true });
        // Rotated again between the listing and the open: list again.
        if (!st.isFile() || !sameIdentity(identityOf(st), current)) continue;
        if (st.size < BigInt(this.offset)) this.offset = 0;
        await this.readToEnd(fh, Number(st.size) - this.offset);
      } finally {
        await fh.close().catch(() => {});
      }
      if (at === backups.length - 1) {
        // The newest backup is done: the live file is next, from its start.
        this.offset = 0;
        this.rawId = null;
        this.stateDirty = true;
        await this.commit();
        return true;
      }
      current = backups[at + 1]!.id;
      this.rawId = current;
      this.offset = 0;
      this.stateDirty = true;
    }
    this.offset = 0;
    this.rawId = null;
    return true;
  }

  /** virtlogd's backups of the raw file that exist now, oldest first (<raw>.k … <raw>.0). */
  private async rotatedBackups(): Promise<{ path: string; id: RawFileIdentity }[]> {
    const found: { path: string; id: RawFileIdentity }[] = [];
    for (let k = 0; k < MAX_ROTATED_BACKUPS; k++) {
      const path = `${this.rawPath}.${k}`;
      try {
        const st = await lstat(path, { bigint: true });
        if (!st.isFile()) break;
        found.push({ path, id: identityOf(st) });
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') break;
        throw err;
      }
    }
    return found.reverse();
  }

  /** The bytes at `offset` belong to a different file now: end the old line and start over. */
  private restartAtZero(reason: string): void {
    this.logger.info({ rawPath: this.rawPath, offset: this.offset, reason }, 'console log restarts at the beginning of the raw file');
    this.emit(this.splitter.flushAll());
    this.offset = 0;
    this.stateDirty = true;
  }

  /** Reads from `offset` to the end; `expected` sizes the buffer (a UART trickle needs no 256 KiB). */
  private async readToEnd(fh: FileHandle, expected = this.readChunkBytes): Promise<void> {
    const buf = Buffer.allocUnsafe(Math.min(this.readChunkBytes, Math.max(4096, expected)));
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
      if (bytesRead === 0) break;
      this.offset += bytesRead;
      this.counters.bytesRead += bytesRead;
      this.emit(this.splitter.push(buf.subarray(0, bytesRead)));
      this.stateDirty = true;
      await this.commit();
      // A short read reached the end; what arrives later raises a watch event or the poll sees it.
      if (bytesRead < buf.length) break;
    }
    await this.commit();
  }

  private emit(entries: CriLogEntry[]): void {
    if (entries.length === 0) return;
    this.outbox.push(formatCriEntries(entries, formatRfc3339NanoUtc(this.clock())));
    this.counters.entriesWritten += entries.length;
    this.stateDirty = true; // the pending bytes changed
    // A new unfinished line (if any) starts now.
    this.pendingSince = undefined;
    if (this.partialTimer !== undefined) clearTimeout(this.partialTimer);
    this.partialTimer = undefined;
  }

  /** Log first, then state: a crash in between repeats the batch but cannot lose it. */
  private async commit(): Promise<void> {
    await this.flushOutbox();
    if (!this.stateDirty) return;
    const state: ConsoleLogState = { raw: this.rawId, offset: this.offset, pending: this.splitter.pending };
    await writeFileAtomic(this.statePath, encodeConsoleLogState(state));
    this.stateDirty = false;
    this.counters.stateSaves++;
  }

  private async flushOutbox(): Promise<void> {
    while (this.outbox.length > 0) {
      if (this.log === undefined) await this.openLog();
      const log = this.log as FileHandle | undefined;
      if (log === undefined) throw new InternalError(`container log ${this.logPath} is not open`);
      if (this.outbox.length > 1) this.outbox = [Buffer.concat(this.outbox)];
      const data = this.outbox[0]!;
      const { bytesWritten } = await log.write(data, 0, data.length, null);
      if (bytesWritten <= 0) throw new InternalError(`writing the container log ${this.logPath} made no progress`);
      this.counters.logBytesWritten += bytesWritten;
      if (bytesWritten < data.length) this.outbox[0] = data.subarray(bytesWritten);
      else this.outbox.shift();
    }
  }

  private async openLog(): Promise<void> {
    await mkdir(dirname(this.logPath), { recursive: true, mode: LOG_DIR_MODE });
    const flags =
      fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;
    const fh = await open(this.logPath, flags, LOG_FILE_MODE);
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new InternalError(`container log ${this.logPath} is not a regular file`);
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
    this.log = fh;
  }

  private armPartialTimer(): void {
    if (this.phase !== 'running') return;
    if (!this.splitter.hasFlushablePending) {
      this.pendingSince = undefined;
      return;
    }
    this.pendingSince ??= performance.now();
    if (this.partialTimer !== undefined) return;
    const wait = Math.max(0, this.pendingSince + this.partialFlushMs - performance.now());
    this.partialTimer = setTimeout(() => {
      this.partialTimer = undefined;
      this.enqueue(() => this.flushPartialLine()).catch((err) => this.reportBackground(err));
    }, wait);
    this.partialTimer.unref();
  }

  private async flushPartialLine(): Promise<void> {
    if (this.phase !== 'running') return;
    // The newline may already be in the raw file: read first, flush only what still waits.
    await this.drain();
    const since = this.pendingSince;
    if (since !== undefined && performance.now() - since >= this.partialFlushMs - 1) {
      this.emit(this.splitter.flushPartial());
      await this.commit();
    }
    this.armPartialTimer();
  }

  private clearTimers(): void {
    if (this.batchTimer !== undefined) clearTimeout(this.batchTimer);
    if (this.partialTimer !== undefined) clearTimeout(this.partialTimer);
    this.batchTimer = undefined;
    this.partialTimer = undefined;
  }

  private async closeRaw(): Promise<void> {
    const raw = this.raw;
    this.raw = undefined;
    this.watcher?.close();
    this.watcher = undefined;
    await raw?.fh.close().catch(() => {});
  }

  private async closeLog(): Promise<void> {
    const log = this.log;
    this.log = undefined;
    await log?.close().catch(() => {});
  }

  private async closeFiles(): Promise<void> {
    this.clearTimers();
    await this.closeRaw();
    await this.closeLog();
  }
}
