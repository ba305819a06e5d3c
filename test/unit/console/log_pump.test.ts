import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertGolden } from '../../helpers/golden.js';
import { InvalidArgumentError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import {
  CriLineSplitter,
  formatCriEntries,
  formatRfc3339NanoUtc,
  incompleteUtf8Tail,
  utf8SafeCut,
  type CriLogEntry,
} from '../../../src/console/cri_log_format.js';
import { ConsoleLogPump } from '../../../src/console/log_pump.js';
import { decodeConsoleLogState, encodeConsoleLogState } from '../../../src/console/log_pump_state.js';

/** 2026-11-23T11:47:59.123456789Z */
const T0 = BigInt(Date.UTC(2026, 10, 23, 11, 47, 59)) * 1_000_000n + 123_456_789n;

type Step = string; // a latin1 byte chunk, or 'flushPartial' / 'flushAll'

function bytes(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

/**
 * Runs a scenario: byte chunks (strings are latin1, so every char is one byte), timed flushes and
 * the final flush. Each step's entries are stamped with a clock that advances 1 µs per step.
 */
function run(steps: Step[], maxLineBytes?: number): { entries: CriLogEntry[]; pending: Buffer; log: Buffer; transcript: string } {
  const splitter = new CriLineSplitter(maxLineBytes);
  const entries: CriLogEntry[] = [];
  const logParts: Buffer[] = [];
  const transcript: string[] = [];
  steps.forEach((step, i) => {
    let out: CriLogEntry[];
    let label: string;
    if (step === 'flushPartial') {
      out = splitter.flushPartial();
      label = 'timed flush';
    } else if (step === 'flushAll') {
      out = splitter.flushAll();
      label = 'final flush';
    } else {
      const chunk = bytes(step);
      out = splitter.push(chunk);
      label = `push ${escape(chunk)}`;
    }
    const ts = formatRfc3339NanoUtc(T0 + BigInt(i) * 1000n);
    const log = formatCriEntries(out, ts);
    entries.push(...out);
    logParts.push(log);
    transcript.push(`# ${label}  (pending after: ${escape(splitter.pending)})`);
    for (const e of out) transcript.push(`${ts} stdout ${e.tag} ${escape(e.content)}`);
  });
  return { entries, pending: splitter.pending, log: Buffer.concat(logParts), transcript: `${transcript.join('\n')}\n` };
}

/** Printable ASCII as is, everything else (and backslash) as \xHH, so goldens stay readable text. */
function escape(b: Uint8Array): string {
  let s = '';
  for (const c of b) s += c >= 0x20 && c < 0x7f && c !== 0x5c ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
  return s;
}

/** What kubelet reconstructs: P contents are joined to the next entry, F ends a line with \n. */
function reconstruct(entries: CriLogEntry[]): Buffer {
  return Buffer.concat(entries.flatMap((e) => (e.tag === 'F' ? [e.content, bytes('\n')] : [e.content])));
}

/** The input as the log should carry it: one CR before each LF dropped, nothing else changed. */
function normalized(input: Buffer): Buffer {
  return bytes(input.toString('latin1').replace(/\r\n/g, '\n'));
}

/** Parses a CRI log file the way kubelet's parseCRILog does and checks every line is well-formed. */
function parseCriLog(log: Buffer): { ts: string; tag: string; content: Buffer }[] {
  const out: { ts: string; tag: string; content: Buffer }[] = [];
  let start = 0;
  while (start < log.length) {
    const nl = log.indexOf(0x0a, start);
    assert.ok(nl >= 0, 'log ends without a newline');
    const line = log.subarray(start, nl);
    const s1 = line.indexOf(0x20);
    const s2 = line.indexOf(0x20, s1 + 1);
    const s3 = line.indexOf(0x20, s2 + 1);
    assert.ok(s1 > 0 && s2 > s1 && s3 > s2, `malformed line ${escape(line)}`);
    const ts = line.subarray(0, s1).toString('latin1');
    assert.match(ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    assert.equal(line.subarray(s1 + 1, s2).toString('latin1'), 'stdout');
    const tag = line.subarray(s2 + 1, s3).toString('latin1');
    assert.ok(tag === 'P' || tag === 'F', `bad tag ${tag}`);
    out.push({ ts, tag, content: line.subarray(s3 + 1) });
    start = nl + 1;
  }
  return out;
}

const SCENARIOS: Record<string, { steps: Step[]; max?: number }> = {
  'lines-across-chunks': { steps: ['hello wo', 'rld\nsecond li', 'ne\nthird\nfou', 'rth\n'] },
  crlf: { steps: ['a\r\n', 'b\r', '\nc\r\r\n', 'progress 10%\rprogress 20%\r\n', '\r\n', 'd\r', 'flushPartial', '\n'] },
  'empty-lines': { steps: ['\n', '\n\n', 'x\n\n', '\r\n'] },
  'partial-flush-then-complete': {
    steps: ['login: ', 'flushPartial', 'flushPartial', 'root', 'flushPartial', '\nnext line\n', 'tail without newline', 'flushAll'],
  },
  'over-long-lines': {
    max: 8,
    steps: [
      '0123456789abcdefghij\n', // 20 bytes: P 8, P 8, F 4
      '01234567\n', // exactly the limit: one F
      '0123456789abcdef\n', // twice the limit: P 8, F 8
      '01234567\r\n', // the CR does not count: one F
      '0123456789', // no newline yet: P 8 as soon as it is over the limit
      '\n',
      '01234567\r', // a trailing CR may be half of CRLF: nothing yet
      '\n',
      'aaaaaaa\xe2\x82\xacb\n', // the euro sign would straddle the cut: P ends before it
    ],
  },
  'invalid-utf8': {
    steps: [
      '\xff\xfe bad \xc3(\n', // impossible bytes and a broken 2-byte sequence
      '\x80\n', // lone continuation byte
      '\xe2\x82\n', // sequence cut short by the newline
      '\xc0\xaf\n', // overlong encoding
      'h\xc3\xa9llo \xe2\x98\x83 \xf0\x9f\x98\x80\n', // valid: é ☃ 😀
      'snow \xe2\x98', // incomplete snowman at a timed flush: held back
      'flushPartial',
      '\x83\n',
    ],
  },
  'nul-bytes': { steps: ['a\x00b\n', '\x00\x00\n', '\x00', 'flushAll'] },
};

for (const [name, { steps, max }] of Object.entries(SCENARIOS)) {
  test(`CRI conversion golden: ${name}`, () => {
    const { entries, pending, log, transcript } = run(steps, max);
    assertGolden(`console/log_pump/${name}.txt`, transcript);
    assertGolden(`console/log_pump/${name}.log`, log);
    const input = Buffer.concat(steps.filter((s) => s !== 'flushPartial' && s !== 'flushAll').map(bytes));
    // Lossless: kubelet's view of the log plus what is still pending is the console output with
    // CRLF turned into LF.
    assert.deepEqual(Buffer.concat([reconstruct(entries), pending]), normalized(input));
    for (const e of entries) assert.ok(e.content.length <= (max ?? 16384));
    const parsed = parseCriLog(log);
    assert.equal(parsed.length, entries.length);
    parsed.forEach((p, i) => {
      assert.equal(p.tag, entries[i]!.tag);
      assert.deepEqual(p.content, entries[i]!.content);
    });
  });
}

test('specific expectations the goldens must keep', () => {
  const tags = (steps: Step[], max?: number) => run(steps, max).entries.map((e) => `${e.tag}:${escape(e.content)}`);
  assert.deepEqual(tags(['hello wo', 'rld\n']), ['F:hello world']);
  assert.deepEqual(tags(['a\r\n', '\r\n', 'b\r', '\n']), ['F:a', 'F:', 'F:b']);
  assert.deepEqual(tags(['login: ', 'flushPartial', 'root\n']), ['P:login: ', 'F:root']);
  assert.deepEqual(tags(['0123456789abcdefghij\n'], 8), ['P:01234567', 'P:89abcdef', 'F:ghij']);
  assert.deepEqual(tags(['01234567\n', '01234567\r\n'], 8), ['F:01234567', 'F:01234567']);
  assert.deepEqual(tags(['aaaaaaa\xe2\x82\xacb\n'], 8), ['P:aaaaaaa', 'F:\\xe2\\x82\\xacb']);
  assert.deepEqual(tags(['snow \xe2\x98', 'flushPartial', '\x83\n']), ['P:snow ', 'F:\\xe2\\x98\\x83']);
  assert.deepEqual(tags(['x\x00\n']), ['F:x\\x00']);
  // A timed flush never emits an empty entry or a lone CR that may belong to a CRLF.
  assert.deepEqual(tags(['\r', 'flushPartial', 'flushPartial', '\n']), ['F:']);
});

/** Deterministic PRNG (mulberry32), so a failing case can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('random bytes in random chunks with random timed flushes are carried losslessly', () => {
  const alphabet = [0x0a, 0x0d, 0x00, 0x41, 0x20, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0xff, 0x80];
  for (let seed = 1; seed <= 300; seed++) {
    const rnd = prng(seed);
    const max = 4 + Math.floor(rnd() * 20);
    const input = Buffer.from(Array.from({ length: Math.floor(rnd() * 400) }, () => alphabet[Math.floor(rnd() * alphabet.length)]!));
    const splitter = new CriLineSplitter(max);
    const entries: CriLogEntry[] = [];
    for (let at = 0; at < input.length; ) {
      const n = 1 + Math.floor(rnd() * 30);
      entries.push(...splitter.push(input.subarray(at, at + n)));
      at += n;
      if (rnd() < 0.3) entries.push(...splitter.flushPartial());
      assert.ok(splitter.pending.length <= max + 1, `seed ${seed}: pending grew to ${splitter.pending.length}`);
    }
    entries.push(...splitter.flushAll());
    assert.deepEqual(reconstruct(entries), normalized(input), `seed ${seed}`);
    for (const e of entries) {
      assert.ok(e.content.length <= max, `seed ${seed}: entry of ${e.content.length} bytes over limit ${max}`);
      assert.equal(e.content.indexOf(0x0a), -1, `seed ${seed}: newline inside an entry`);
      if (e.tag === 'P') assert.ok(e.content.length > 0, `seed ${seed}: empty P entry`);
    }
  }
});

test('valid UTF-8 is never cut inside a character, by length splits or timed flushes', () => {
  const chars = ['a', ' ', '\n', 'é', '€', '☃', '😀', '\r\n'];
  const decoder = new TextDecoder('utf-8', { fatal: true });
  for (let seed = 1; seed <= 200; seed++) {
    const rnd = prng(seed);
    const max = 4 + Math.floor(rnd() * 12);
    const text = Array.from({ length: Math.floor(rnd() * 200) }, () => chars[Math.floor(rnd() * chars.length)]!).join('');
    const input = Buffer.from(text, 'utf8');
    const splitter = new CriLineSplitter(max);
    const entries: CriLogEntry[] = [];
    for (let at = 0; at < input.length; ) {
      const n = 1 + Math.floor(rnd() * 7);
      entries.push(...splitter.push(input.subarray(at, at + n)));
      at += n;
      if (rnd() < 0.5) entries.push(...splitter.flushPartial());
    }
    entries.push(...splitter.flushAll());
    for (const e of entries) assert.doesNotThrow(() => decoder.decode(e.content), `seed ${seed}: ${escape(e.content)}`);
    assert.equal(reconstruct(entries).toString('utf8'), text.replace(/\r\n/g, '\n'), `seed ${seed}`);
  }
});

test('utf8SafeCut and incompleteUtf8Tail', () => {
  const euro = bytes('ab\xe2\x82\xac');
  assert.equal(utf8SafeCut(euro, 3), 2);
  assert.equal(utf8SafeCut(euro, 4), 2);
  assert.equal(utf8SafeCut(euro, 5), 5);
  assert.equal(utf8SafeCut(bytes('abcd\x80\x80'), 5), 5, 'stray continuation bytes are cut anywhere');
  assert.equal(utf8SafeCut(bytes('\xe2\x82\xac\xe2\x82\xac'), 4), 3);
  assert.equal(utf8SafeCut(bytes('\xf0\x9f\x98\x80xyz'), 2), 2, 'never a zero-length cut');
  assert.equal(incompleteUtf8Tail(bytes('ab\xe2\x82')), 2);
  assert.equal(incompleteUtf8Tail(bytes('ab\xf0')), 1);
  assert.equal(incompleteUtf8Tail(bytes('ab\xe2\x82\xac')), 0);
  assert.equal(incompleteUtf8Tail(bytes('ab\x82')), 0);
  assert.equal(incompleteUtf8Tail(bytes('')), 0);
});

test('RFC 3339 timestamps: UTC, nine fractional digits, parseable back', () => {
  assert.equal(formatRfc3339NanoUtc(T0), '2026-11-23T11:47:59.123456789Z');
  assert.equal(formatRfc3339NanoUtc(0n), '1970-01-01T00:00:00.000000000Z');
  assert.equal(formatRfc3339NanoUtc(1_000_000_001n), '1970-01-01T00:00:01.000000001Z');
  assert.equal(formatRfc3339NanoUtc(253_402_300_799_999_999_999n), '9999-12-31T23:59:59.999999999Z');
  assert.equal(Date.parse(formatRfc3339NanoUtc(T0)), Number(T0 / 1_000_000n));
  assert.throws(() => formatRfc3339NanoUtc(-1n), RangeError);
  assert.throws(() => formatRfc3339NanoUtc(253_402_300_800_000_000_000n), RangeError);
});

test('splitter rejects a line limit too small for one UTF-8 character', () => {
  assert.throws(() => new CriLineSplitter(3), RangeError);
  assert.throws(() => new CriLineSplitter(1.5), RangeError);
});

test('saved state round-trips and hostile or broken states are refused', () => {
  const state = { raw: { dev: '2049', ino: '18446744073709551615', birth: '1795435053607541559' }, offset: 1234, pending: bytes('half a li\xe2') };
  const text = encodeConsoleLogState(state);
  assert.deepEqual(decodeConsoleLogState(text), state);
  assert.deepEqual(decodeConsoleLogState(encodeConsoleLogState({ raw: null, offset: 0, pending: Buffer.alloc(0) })), {
    raw: null,
    offset: 0,
    pending: Buffer.alloc(0),
  });
  const bad = [
    'not json',
    '{}',
    '{"version":2,"raw":null,"offset":0,"pending":""}',
    '{"version":1,"raw":{"dev":"1","ino":"../x","birth":"0"},"offset":0,"pending":""}',
    '{"version":1,"raw":{"dev":1,"ino":"2","birth":"0"},"offset":0,"pending":""}',
    '{"version":1,"raw":{"dev":"1","ino":"2"},"offset":0,"pending":""}',
    '{"version":1,"raw":"1:2","offset":0,"pending":""}',
    '{"version":1,"raw":null,"offset":-1,"pending":""}',
    '{"version":1,"raw":null,"offset":1.5,"pending":""}',
    '{"version":1,"raw":null,"offset":2,"pending":"YWJj"}',
    '{"version":1,"raw":null,"offset":10,"pending":"!!!!"}',
    '{"version":1,"raw":null,"offset":10}',
  ];
  for (const b of bad) assert.throws(() => decodeConsoleLogState(b), InvalidArgumentError, b);
});

test('pump refuses relative or NUL-carrying paths and bad limits before touching anything', () => {
  const ok = { rawPath: '/x/raw', logPath: '/var/log/pods/p/c/0.log', statePath: '/x/state.json', logger: silentLogger };
  assert.doesNotThrow(() => new ConsoleLogPump(ok));
  assert.throws(() => new ConsoleLogPump({ ...ok, logPath: 'c/0.log' }), InvalidArgumentError);
  assert.throws(() => new ConsoleLogPump({ ...ok, rawPath: 'raw' }), InvalidArgumentError);
  assert.throws(() => new ConsoleLogPump({ ...ok, statePath: '/x/st\0ate' }), InvalidArgumentError);
  assert.throws(() => new ConsoleLogPump({ ...ok, maxLineBytes: 2 }), InvalidArgumentError);
  assert.throws(() => new ConsoleLogPump({ ...ok, pollMs: 0 }), InvalidArgumentError);
  assert.equal(new ConsoleLogPump(ok).stats().phase, 'new');
});
