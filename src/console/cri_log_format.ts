/**
 * Pure conversion of a console byte stream into CRI container log entries.
 *
 * The CRI log format (kubelet pkg/kubelet/kuberuntime/logs, containerd's CRI logger) is one entry
 * per line: `<timestamp> <stream> <tag> <content>\n`, where tag `F` closes a line and `P` marks a
 * piece of a line that continues in the next entry; kubelet concatenates P… F contents back into
 * one line. Content is opaque bytes to kubelet: it splits off the first three space-separated
 * fields and passes the rest through unchanged.
 *
 * Byte policy (decided here, relied on by the pump):
 * - A line ends at `\n`; one `\r` right before it is dropped (serial consoles send CRLF).
 *   Any other `\r` (progress bars), NUL and control bytes pass through unchanged.
 * - Invalid UTF-8 passes through byte for byte, as containerd does: no replacement characters,
 *   so nothing the guest wrote is altered or lost, and kubelet never decodes it.
 * - Entries are split (over-long lines, timed flushes) only at UTF-8 boundaries where the input
 *   allows it, so a valid multi-byte character is never cut between two entries.
 * - Content never contains `\n`, so an entry can never forge a second entry.
 */

export type CriTag = 'P' | 'F';

export interface CriLogEntry {
  readonly tag: CriTag;
  readonly content: Buffer;
}

/** containerd's default max_container_log_line_size. */
export const DEFAULT_MAX_LINE_BYTES = 16 * 1024;
/** Smallest allowed limit: a 4-byte UTF-8 character must fit in one entry. */
export const MIN_MAX_LINE_BYTES = 4;

const LF = 0x0a;
const CR = 0x0d;
const EMPTY = Buffer.alloc(0);

/**
 * Splits a byte stream into CRI entries. Holds at most one unfinished line (bounded by
 * maxLineBytes plus a few held-back bytes), so a guest cannot make it grow without limit.
 */
export class CriLineSplitter {
  private pendingBytes: Buffer;

  constructor(readonly maxLineBytes: number = DEFAULT_MAX_LINE_BYTES) {
    if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes < MIN_MAX_LINE_BYTES) {
      throw new RangeError(`maxLineBytes must be an integer >= ${MIN_MAX_LINE_BYTES}, got ${maxLineBytes}`);
    }
    this.pendingBytes = EMPTY;
  }

  /** Bytes of the unfinished line: read from the console but not yet in any entry. */
  get pending(): Buffer {
    return this.pendingBytes;
  }

  /** True when a timed flush would emit something (pending holds more than a held-back tail). */
  get hasFlushablePending(): boolean {
    return flushableLength(this.pendingBytes) > 0;
  }

  /** Feeds console bytes; returns the entries they complete. */
  push(chunk: Uint8Array): CriLogEntry[] {
    const entries: CriLogEntry[] = [];
    if (chunk.length === 0) return entries;
    // A view, not a copy: every entry and the new remainder below are copied out of it.
    const data =
      this.pendingBytes.length === 0
        ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length)
        : Buffer.concat([this.pendingBytes, chunk]);
    let start = 0;
    for (let nl = data.indexOf(LF, start); nl >= 0; nl = data.indexOf(LF, start)) {
      const end = nl > start && data[nl - 1] === CR ? nl - 1 : nl;
      const rest = this.splitLong(data.subarray(start, end), end - start, entries);
      entries.push({ tag: 'F', content: Buffer.from(rest) });
      start = nl + 1;
    }
    // A trailing CR may turn out to be half of a CRLF, so it does not count towards the limit yet.
    const tail = data.subarray(start);
    const rest = this.splitLong(tail, contentLength(tail), entries);
    // Copy, so the (possibly large) chunk is not kept alive by a small remainder.
    this.pendingBytes = rest.length === 0 ? EMPTY : Buffer.from(rest);
    return entries;
  }

  /**
   * Emits the unfinished line as a P entry because no newline came in time. Keeps back a final CR
   * (it may be the start of CRLF) and an incomplete UTF-8 sequence (the rest is likely on its way).
   */
  flushPartial(): CriLogEntry[] {
    const n = flushableLength(this.pendingBytes);
    if (n === 0) return [];
    const entry: CriLogEntry = { tag: 'P', content: Buffer.from(this.pendingBytes.subarray(0, n)) };
    const rest = this.pendingBytes.subarray(n);
    this.pendingBytes = rest.length === 0 ? EMPTY : Buffer.from(rest);
    return [entry];
  }

  /** Emits everything pending as a P entry, held-back bytes included (end of the stream). */
  flushAll(): CriLogEntry[] {
    if (this.pendingBytes.length === 0) return [];
    const entries: CriLogEntry[] = [];
    // A final CR was not counted towards the limit while it might be half of a CRLF; now it is.
    const rest = this.splitLong(this.pendingBytes, this.pendingBytes.length, entries);
    entries.push({ tag: 'P', content: Buffer.from(rest) });
    this.pendingBytes = EMPTY;
    return entries;
  }

  /** Cuts P entries off the front of `line` while its content is over the limit; returns the rest. */
  private splitLong(line: Buffer, length: number, entries: CriLogEntry[]): Buffer {
    let rest = line;
    let restLength = length;
    while (restLength > this.maxLineBytes) {
      const cut = utf8SafeCut(rest, this.maxLineBytes);
      entries.push({ tag: 'P', content: Buffer.from(rest.subarray(0, cut)) });
      rest = rest.subarray(cut);
      restLength -= cut;
    }
    return rest;
  }
}

/** Content length of an unfinished line, not counting a final CR that may belong to a CRLF. */
function contentLength(bytes: Buffer): number {
  return bytes.length > 0 && bytes[bytes.length - 1] === CR ? bytes.length - 1 : bytes.length;
}

/** How much of an unfinished line a timed flush may emit (see flushPartial). */
function flushableLength(bytes: Buffer): number {
  let n = contentLength(bytes);
  n -= incompleteUtf8Tail(bytes.subarray(0, n));
  return n;
}

function isContinuation(b: number): boolean {
  return (b & 0xc0) === 0x80;
}

/** Length of the UTF-8 sequence a lead byte starts, or 0 if `b` cannot start a multi-byte one. */
function sequenceLength(b: number): number {
  if (b >= 0xc2 && b <= 0xdf) return 2;
  if (b >= 0xe0 && b <= 0xef) return 3;
  if (b >= 0xf0 && b <= 0xf4) return 4;
  return 0;
}

/**
 * Number of bytes at the end of `bytes` that form the valid start of a multi-byte UTF-8 sequence
 * whose remaining bytes have not arrived yet (0 if the end is at a character boundary).
 */
export function incompleteUtf8Tail(bytes: Uint8Array): number {
  const len = bytes.length;
  for (let back = 1; back <= 3 && back <= len; back++) {
    const b = bytes[len - back]!;
    if (isContinuation(b)) continue;
    const need = sequenceLength(b);
    return need > back ? back : 0;
  }
  return 0;
}

/**
 * Where to cut `bytes` so the first piece has at most `max` bytes without splitting a valid UTF-8
 * sequence; falls back to `max` when the bytes there are not valid UTF-8. Always in 1..max.
 */
export function utf8SafeCut(bytes: Uint8Array, max: number): number {
  if (bytes.length <= max) return bytes.length;
  if (!isContinuation(bytes[max]!)) return max;
  for (let i = max - 1; i >= Math.max(1, max - 3); i--) {
    const b = bytes[i]!;
    if (isContinuation(b)) continue;
    const need = sequenceLength(b);
    if (need === 0 || i + need <= max) return max;
    const end = Math.min(i + need, bytes.length);
    for (let j = i + 1; j < end; j++) if (!isContinuation(bytes[j]!)) return max;
    return i;
  }
  return max;
}

const NS_PER_MS = 1_000_000n;
const NS_PER_S = 1_000_000_000n;
/** 9999-12-31T23:59:59.999999999Z: the last instant a four-digit year can show. */
const MAX_EPOCH_NS = 253_402_300_799_999_999_999n;

/**
 * RFC 3339 UTC timestamp with exactly nine fractional digits (kubelet's RFC3339NanoFixed; kubelet
 * reads it with a lenient RFC3339Nano parse), e.g. `2026-11-23T11:47:59.123456789Z`.
 */
export function formatRfc3339NanoUtc(epochNs: bigint): string {
  if (epochNs < 0n || epochNs > MAX_EPOCH_NS) throw new RangeError(`timestamp out of range: ${epochNs}`);
  const seconds = new Date(Number((epochNs / NS_PER_S) * 1000n)).toISOString().slice(0, 19);
  const fraction = (epochNs % NS_PER_S).toString().padStart(9, '0');
  return `${seconds}.${fraction}Z`;
}

/** The wall clock in nanoseconds since the epoch (millisecond resolution, the best Node offers). */
export function wallClockNs(): bigint {
  return BigInt(Date.now()) * NS_PER_MS;
}

/** Renders entries as CRI log lines on the stdout stream, all stamped with `timestamp`. */
export function formatCriEntries(entries: readonly CriLogEntry[], timestamp: string): Buffer {
  // One allocation for the whole batch: a busy console yields hundreds of thousands of entries.
  const prefix = Buffer.from(`${timestamp} stdout `, 'latin1');
  let size = 0;
  for (const e of entries) size += prefix.length + 2 + e.content.length + 1;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const e of entries) {
    at += prefix.copy(out, at);
    out[at++] = e.tag === 'F' ? 0x46 : 0x50;
    out[at++] = 0x20;
    at += e.content.copy(out, at);
    out[at++] = LF;
  }
  return out;
}
