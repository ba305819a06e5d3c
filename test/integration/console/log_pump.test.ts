import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, symlink, truncate, unlink, writeFile } from 'node:fs/promises';
import { watch } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FailedPreconditionError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';
import { ConsoleLogPump, type ConsoleLogPumpOptions } from '../../../src/console/log_pump.js';
import { sharedPollMembers } from '../../../src/console/shared_poll.js';

interface Entry {
  ts: string;
  tag: string;
  content: string;
}

/** Reads a CRI log file, checking every line has kubelet's `<RFC3339Nano> stdout <P|F> <content>` shape. */
async function readEntries(path: string): Promise<Entry[]> {
  let text: string;
  try {
    text = await readFile(path, 'latin1');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  if (text === '') return [];
  assert.ok(text.endsWith('\n'), 'log file ends inside an entry');
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => {
      const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) stdout ([PF]) (.*)$/s.exec(line);
      assert.ok(m, `malformed CRI log line: ${JSON.stringify(line)}`);
      return { ts: m[1]!, tag: m[2]!, content: m[3]! };
    });
}

function brief(entries: Entry[]): string[] {
  return entries.map((e) => `${e.tag}:${e.content}`);
}

async function waitFor<T>(what: string, probe: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await probe();
  while (!done(last)) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; last seen: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 10));
    last = await probe();
  }
  return last;
}

async function openFdCount(): Promise<number> {
  return (await readdir('/proc/self/fd')).length;
}

interface Fixture {
  dir: string;
  raw: string;
  log: string;
  state: string;
  pump(extra?: Partial<ConsoleLogPumpOptions>): ConsoleLogPump;
}

/** A temp dir with paths for one container; every pump made here is stopped and the dir removed. */
async function fixture(t: TestContext): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-console-log-'));
  const pumps: ConsoleLogPump[] = [];
  // libuv opens its one inotify descriptor on the first fs.watch and keeps it: open it up front.
  watch(dir).close();
  const fdsBefore = await openFdCount();
  t.after(async () => {
    for (const p of pumps) await p.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
    assert.equal(sharedPollMembers(), 0, 'a pump is still on the shared poll timer');
    // Fewer is no leak: the test process itself may close one of its own meanwhile (seen once in CI).
    const fdsAfter = await openFdCount();
    assert.ok(fdsAfter <= fdsBefore, `file descriptors leaked: ${fdsAfter} open after, ${fdsBefore} before`);
  });
  const f: Fixture = {
    dir,
    raw: join(dir, 'state', 'console.raw'),
    // Nested and missing: the pump creates the pod log directory like kubelet would have.
    log: join(dir, 'pods', 'ns_pod_uid', 'web', '0.log'),
    state: join(dir, 'state', 'console-log.json'),
    pump(extra = {}) {
      const p = new ConsoleLogPump({ rawPath: f.raw, logPath: f.log, statePath: f.state, logger: silentLogger, pollMs: 50, ...extra });
      pumps.push(p);
      return p;
    },
  };
  await mkdir(join(dir, 'state'));
  return f;
}

test('follows appends to the raw file and writes CRI entries with O_APPEND, creating the log', async (t) => {
  const f = await fixture(t);
  await writeFile(f.raw, 'SeaBIOS (version 1.16)\r\nBooting from Hard Disk...\r\n');
  const before = Date.now();
  // A long poll interval: prompt delivery here can only come from fs.watch.
  const pump = f.pump({ pollMs: 60_000 });
  await pump.start();
  assert.deepEqual(brief(await readEntries(f.log)), ['F:SeaBIOS (version 1.16)', 'F:Booting from Hard Disk...']);

  const t0 = Date.now();
  await appendFile(f.raw, '[    0.000000] Linux version 6.1.0');
  await appendFile(f.raw, '-cloud-amd64\r\n[    0.1');
  await appendFile(f.raw, '00000] Command line: console=ttyS0\r\n\r\nlogin: ');
  await appendFile(f.raw, 'root\r\n');
  const entries = await waitFor('the appended lines', () => readEntries(f.log), (e) => e.length === 6, 2000);
  const latency = Date.now() - t0;
  t.diagnostic(`fs.watch delivery of 4 appends: ${latency} ms`);
  assert.deepEqual(brief(entries), [
    'F:SeaBIOS (version 1.16)',
    'F:Booting from Hard Disk...',
    'F:[    0.000000] Linux version 6.1.0-cloud-amd64',
    'F:[    0.100000] Command line: console=ttyS0',
    'F:',
    'F:login: root',
  ]);
  for (const e of entries) {
    const ms = Date.parse(e.ts);
    assert.ok(ms >= before - 1 && ms <= Date.now() + 1, `timestamp ${e.ts} is not the read time`);
  }
  assert.equal((await stat(f.log)).mode & 0o777, 0o640);
  assert.equal((await stat(join(f.dir, 'pods', 'ns_pod_uid', 'web'))).mode & 0o777, 0o755);
  assert.equal(pump.stats().rawOffset, (await stat(f.raw)).size);
  await pump.stop();
  assert.equal(pump.stats().phase, 'stopped');
});

test('a raw file that appears after start is picked up by the poll', async (t) => {
  const f = await fixture(t);
  const pump = f.pump();
  await pump.start();
  assert.deepEqual(await readEntries(f.log), [], 'the log file exists and is empty before QEMU writes');
  await writeFile(f.raw, 'first\n');
  await waitFor('the first line', () => readEntries(f.log), (e) => e.length === 1);
  await appendFile(f.raw, 'second\n');
  assert.deepEqual(brief(await waitFor('the second line', () => readEntries(f.log), (e) => e.length === 2)), ['F:first', 'F:second']);
});

test('an unfinished line is flushed as P after partialFlushMs, and its rest follows as F', async (t) => {
  const f = await fixture(t);
  await writeFile(f.raw, '');
  const pump = f.pump({ partialFlushMs: 150 });
  await pump.start();
  const t0 = Date.now();
  await appendFile(f.raw, 'login: ');
  const first = await waitFor('the P entry', () => readEntries(f.log), (e) => e.length === 1);
  const waited = Date.now() - t0;
  t.diagnostic(`P entry after ${waited} ms (partialFlushMs 150)`);
  assert.ok(waited >= 140, `flushed too early: ${waited} ms`);
  assert.deepEqual(brief(first), ['P:login: ']);
  await appendFile(f.raw, 'root\n');
  assert.deepEqual(brief(await waitFor('the F entry', () => readEntries(f.log), (e) => e.length === 2)), ['P:login: ', 'F:root']);
  // Nothing pending, so nothing more is flushed.
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await readEntries(f.log)).length, 2);
});

test('a line longer than 16 KiB becomes P… F entries of at most 16 KiB', async (t) => {
  const f = await fixture(t);
  await writeFile(f.raw, '');
  const pump = f.pump();
  await pump.start();
  const line = Array.from({ length: 40_000 }, (_, i) => String.fromCharCode(0x61 + (i % 26))).join('');
  await appendFile(f.raw, `${line}\nok\n`);
  const entries = await waitFor('the split line', () => readEntries(f.log), (e) => e.length === 4);
  assert.deepEqual(
    entries.map((e) => `${e.tag}${e.content.length}`),
    ['P16384', 'P16384', 'F7232', 'F2'],
  );
  assert.equal(entries.slice(0, 3).map((e) => e.content).join(''), line);
});

test('stop, more console output while down, start again: the new output appears exactly once', async (t) => {
  const f = await fixture(t);
  await writeFile(f.raw, 'one\ntwo\n');
  const first = f.pump();
  await first.start();
  await appendFile(f.raw, 'three\nhalf a ');
  await waitFor('three', () => readEntries(f.log), (e) => e.length === 3);
  // vmlet shuts down while the VM keeps running: the unfinished line is kept, not written.
  await first.stop({ keepPartial: true });
  assert.deepEqual(brief(await readEntries(f.log)), ['F:one', 'F:two', 'F:three']);

  await appendFile(f.raw, 'line\nwritten while vmlet was down\n');
  const second = f.pump();
  await second.start();
  assert.deepEqual(brief(await readEntries(f.log)), ['F:one', 'F:two', 'F:three', 'F:half a line', 'F:written while vmlet was down']);
  await appendFile(f.raw, 'after restart\n');
  await waitFor('after restart', () => readEntries(f.log), (e) => e.length === 6);
  await second.stop();

  // A third start with nothing new must add nothing.
  const third = f.pump();
  await third.start();
  await new Promise((r) => setTimeout(r, 150));
  await third.stop();
  assert.deepEqual(brief(await readEntries(f.log)), [
    'F:one',
    'F:two',
    'F:three',
    'F:half a line',
    'F:written while vmlet was down',
    'F:after restart',
  ]);
});

test('a default stop writes the unfinished line as P; the restarted pump continues with F', async (t) => {
  const f = await fixture(t);
  await writeFile(f.raw, 'done\nbye');
  const first = f.pump();
  await first.start();
  await first.stop();
  assert.deepEqual(brief(await readEntries(f.log)), ['F:done', 'P:bye']);
  await appendFile(f.raw, ' now\n');
  const second = f.pump();
  await second.start();
  await second.stop();
  assert.deepEqual(brief(await readEntries(f.log)), ['F:done', 'P:bye', 'F: now']);
});

test('reopen after kubelet renamed the log: new entries go to a new file, the old keeps the old', async (t) => {
  const f = await fixture(t);
  await writeFile(f.raw, 'before rotation 1\nbefore rotation 2\n');
  const pump = f.pump();
  await pump.start();
  const rotated = `${f.log}.20261123-114759`;
  await rename(f.log, rotated);
  await pump.reopen();
  await appendFile(f.raw, 'after rotation\n');
  await waitFor('the entry after rotation', () => readEntries(f.log), (e) => e.length === 1);
  assert.deepEqual(brief(await readEntries(rotated)), ['F:before rotation 1', 'F:before rotation 2']);
  assert.deepEqual(brief(await readEntries(f.log)), ['F:after rotation']);
  assert.equal((await stat(f.log)).mode & 0o777, 0o640);
  await pump.stop();
  await assert.rejects(pump.reopen(), FailedPreconditionError);
});

test('raw file truncated in place: reading starts again at 0', async (t) => {
  const f = await fixture(t);
  await writeFile(f.raw, 'old content that is fairly long\n');
  const pump = f.pump();
  await pump.start();
  await truncate(f.raw, 0);
  await appendFile(f.raw, 'new\n');
  const entries = await waitFor('the line after truncation', () => readEntries(f.log), (e) => e.length === 2);
  assert.deepEqual(brief(entries), ['F:old content that is fairly long', 'F:new']);
});

test('raw file replaced by a new one: the old file is finished, the new one read from 0', async (t) => {
  const f = await fixture(t);
  await writeFile(f.raw, 'old 1\n');
  const pump = f.pump({ pollMs: 60_000 });
  await pump.start();
  // The old file gets a last line and a half line, then a new, longer file takes its place.
  await appendFile(f.raw, 'old 2\nold half');
  await unlink(f.raw);
  await writeFile(f.raw, 'new file line 1\nnew file line 2\n');
  const entries = await waitFor('the new file', () => readEntries(f.log), (e) => e.length === 5);
  assert.deepEqual(brief(entries), ['F:old 1', 'F:old 2', 'P:old half', 'F:new file line 1', 'F:new file line 2']);
});

test('raw file replaced while vmlet was down: the new file is read from 0', async (t) => {
  const f = await fixture(t);
  await writeFile(f.raw, 'first container run, a long line of output\npending');
  const first = f.pump();
  await first.start();
  await first.stop({ keepPartial: true });
  await unlink(f.raw);
  await writeFile(f.raw, 'second run, longer than the offset of the first one, so size alone would not show it\n');
  const second = f.pump();
  await second.start();
  await second.stop();
  assert.deepEqual(brief(await readEntries(f.log)), [
    'F:first container run, a long line of output',
    'P:pending',
    'F:second run, longer than the offset of the first one, so size alone would not show it',
  ]);
});

test('CRLF, invalid UTF-8 and NUL bytes reach the log file byte for byte', async (t) => {
  const f = await fixture(t);
  const raw = Buffer.from('a\r\nb\xff\xfe\x00c\r\n\xe2\x98\x83\n', 'latin1');
  await writeFile(f.raw, raw);
  const pump = f.pump();
  await pump.start();
  await pump.stop();
  const log = await readFile(f.log);
  const contents = log
    .toString('latin1')
    .split('\n')
    .slice(0, -1)
    .map((l) => l.slice(l.indexOf(' F ') + 3));
  assert.deepEqual(
    contents.map((c) => Buffer.from(c, 'latin1').toString('hex')),
    ['61', Buffer.from('b\xff\xfe\x00c', 'latin1').toString('hex'), 'e29883'],
  );
});

test('a symlink at the raw path is not followed', async (t) => {
  const f = await fixture(t);
  const secret = join(f.dir, 'secret');
  await writeFile(secret, 'root:hash:19000:0:99999:7:::\n');
  await symlink(secret, f.raw);
  const pump = f.pump();
  await assert.rejects(pump.start(), /ELOOP|symbolic/);
  assert.equal(pump.stats().phase, 'stopped');
  assert.deepEqual(await readEntries(f.log), []);
});

test('stop right after start leaves nothing running; stop twice is fine', async (t) => {
  const f = await fixture(t);
  await writeFile(f.raw, 'x\n');
  const pump = f.pump();
  const starting = pump.start();
  const stopping = pump.stop();
  await starting;
  await stopping;
  await pump.stop();
  assert.equal(pump.stats().phase, 'stopped');
  assert.equal(sharedPollMembers(), 0);
  assert.deepEqual(brief(await readEntries(f.log)), ['F:x']);
});
