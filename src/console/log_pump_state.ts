/**
 * The console log pump's saved state (which raw file, how far into it, the unfinished line) and the
 * file identity it is keyed on: the on-disk format is its own job, apart from the pump's I/O.
 */
import type { BigIntStats } from 'node:fs';
import { InvalidArgumentError, errorText } from '../errors.js';

/** The most unfinished-line bytes a state file may carry (a longer line is flushed as partial). */
export const MAX_SAVED_PENDING_BYTES = 4 * 1024 * 1024;

/**
 * Identity of a raw console file, so a recreated file is told apart from the one we read. The
 * birth time is part of it because ext4 hands a freed inode number to the next new file at once
 * (seen here: unlink + create gave the same inode); it is "0" where the filesystem has none.
 */
export interface RawFileIdentity {
  dev: string;
  ino: string;
  birth: string;
}

/** What survives a restart: which file, how far into it, and the bytes of the unfinished line. */
export interface ConsoleLogState {
  raw: RawFileIdentity | null;
  offset: number;
  pending: Buffer;
}

const STATE_VERSION = 1;
const DECIMAL = /^[0-9]{1,20}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function encodeConsoleLogState(state: ConsoleLogState): string {
  return `${JSON.stringify({
    version: STATE_VERSION,
    raw: state.raw,
    offset: state.offset,
    pending: state.pending.toString('base64'),
  })}\n`;
}

/** Parses a saved state; throws InvalidArgumentError for anything this module would not write. */
export function decodeConsoleLogState(text: string): ConsoleLogState {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`console log state is not JSON: ${errorText(err)}`);
  }
  const d = doc as { version?: unknown; raw?: unknown; offset?: unknown; pending?: unknown };
  if (typeof doc !== 'object' || doc === null || d.version !== STATE_VERSION) {
    throw new InvalidArgumentError('console log state has an unknown version');
  }
  let raw: RawFileIdentity | null = null;
  if (d.raw !== null) {
    const r = d.raw as { dev?: unknown; ino?: unknown; birth?: unknown } | undefined;
    const fields = typeof r === 'object' ? [r.dev, r.ino, r.birth] : [];
    if (fields.length !== 3 || !fields.every((v) => typeof v === 'string' && DECIMAL.test(v))) {
      throw new InvalidArgumentError('console log state has an invalid raw file identity');
    }
    raw = { dev: r!.dev as string, ino: r!.ino as string, birth: r!.birth as string };
  }
  if (typeof d.offset !== 'number' || !Number.isSafeInteger(d.offset) || d.offset < 0) {
    throw new InvalidArgumentError('console log state has an invalid offset');
  }
  if (typeof d.pending !== 'string' || d.pending.length % 4 !== 0 || !BASE64.test(d.pending)) {
    throw new InvalidArgumentError('console log state has invalid pending bytes');
  }
  const pending = Buffer.from(d.pending, 'base64');
  if (pending.length > MAX_SAVED_PENDING_BYTES || pending.length > d.offset) {
    throw new InvalidArgumentError('console log state has more pending bytes than it can have read');
  }
  return { raw, offset: d.offset, pending };
}

export function identityOf(st: BigIntStats): RawFileIdentity {
  return { dev: st.dev.toString(), ino: st.ino.toString(), birth: st.birthtimeNs.toString() };
}

export function sameIdentity(a: RawFileIdentity, b: RawFileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.birth === b.birth;
}
