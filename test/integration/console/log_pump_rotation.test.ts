/**
 * The console pump across virtlogd's rotation of the raw console file. virtlogd (libvirt 9.0,
 * virRotatingFileWriter) caps a chardev log at max_size and keeps max_backups older files: when the
 * file is full it renames <raw>.(n-2) → <raw>.(n-1), …, <raw>.0 → <raw>.1, <raw> → <raw>.0 (the
 * oldest is overwritten) and starts a new <raw>. The writer here does exactly that on real files,
 * with small limits, while the real pump follows; the CRI log must carry every line once, in order.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { open, mkdtemp, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger, type Logger } from '../../../src/log.js';
import { ConsoleLogPump } from '../../../src/console/log_pump.js';

/** A chatty guest behind virtlogd: appends bytes, rotating like virtlogd at `maxSize`. */
class RotatingWriter {
  private size = 0;
  rotations = 0;
  constructor(
    private readonly path: string,
    private readonly maxSize: number,
    private readonly maxBackups: number,
  ) {}

  async write(data: Buffer): Promise<void> {
    let rest = data;
    while (rest.length > 0) {
      const room = this.maxSize - this.size;
      const part = rest.subarray(0, room);
      const fh = await open(this.path, 'a');
      await fh.write(part);
      await fh.close();
      this.size += part.length;
      rest = rest.subarray(part.length);
      if (this.size === this.maxSize) await this.rotate();
    }
  }

  private async rotate(): Promise<void> {
    for (let i = this.maxBackups; i > 0; i--) {
      const from = i === 1 ? this.path : `${this.path}.${i - 2}`;
      await rename(from, `${this.path}.${i - 1}`).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    }
    this.size = 0;
    this.rotations++;
  }
}

async function logContents(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'latin1');
  } catch {
    return [];
  }
  // Joins P entries to the next one, as kubelet does.
  const lines: string[] = [];
  let partial = '';
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const m = /^\S+ stdout ([PF]) (.*)$/s.exec(line);
    assert.ok(m, `malformed CRI line ${JSON.stringify(line)}`);
    partial += m[2]!;
    if (m[1] === 'F') {
      lines.push(partial);
      partial = '';
    }
  }
  return lines;
}

function numbered(from: number, count: number): { text: string; lines: string[] } {
  const lines: string[] = [];
  for (let i = from; i < from + count; i++) lines.push(`line ${String(i).padStart(7, '0')} ${'x'.repeat(i % 97)}`);
  return { text: lines.map((l) => `${l}\n`).join(''), lines };
}

async function setup(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-console-rotation-'));
  const raw = join(dir, 'console.raw');
  const pumps: ConsoleLogPump[] = [];
  t.after(async () => {
    for (const p of pumps) await p.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  const warnings: string[] = [];
  const logger = Object.assign(Object.create(silentLogger) as Logger, {
    warn: (_obj: unknown, msg: string) => void warnings.push(msg),
    child: () => logger,
  });
  return {
    dir,
    raw,
    log: join(dir, 'logs', 'vm', '0.log'),
    warnings,
    pump() {
      const p = new ConsoleLogPump({ rawPath: raw, logPath: join(dir, 'logs', 'vm', '0.log'), statePath: join(dir, 'console.state'), logger, pollMs: 50, batchDelayMs: 1 });
      pumps.push(p);
      return p;
    },
  };
}

async function waitForLines(path: string, count: number, timeoutMs = 20_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lines = await logContents(path);
    if (lines.length >= count) return lines;
    if (Date.now() > deadline) assert.fail(`log has ${lines.length} of ${count} lines`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a chatty guest: rotations while the pump runs lose and repeat nothing; disk use stays at (1 + backups) x max size', async (t) => {
  const f = await setup(t);
  // virtlogd's own limits scaled down 4x (512 KiB, 3 backups), so the pump may fall up to 2 MiB
  // behind before output is rotated away, as it may fall 8 MiB behind with virtlogd's defaults;
  // the guest writes ~0.95 MB/s, more than the ~400 KB/s a TCG guest flooding its UART made here.
  // (Scaled down 8x at twice that rate, a CI run with three test lanes starved the pump past it.)
  const maxSize = 512 * 1024;
  const writer = new RotatingWriter(f.raw, maxSize, 3);
  const pump = f.pump();
  await pump.start();
  const all: string[] = [];
  let n = 0;
  const started = Date.now();
  while (Date.now() - started < 1500 || writer.rotations < 12) {
    const { text, lines } = numbered(n, 200);
    await writer.write(Buffer.from(text, 'latin1'));
    all.push(...lines);
    n += 200;
    await new Promise((r) => setTimeout(r, 20)); // 200 lines (~19 KB) per 20 ms
  }
  const lines = await waitForLines(f.log, all.length, 60_000);
  await pump.stop();
  assert.deepEqual(lines, all);
  const sizes = await Promise.all(['', '.0', '.1', '.2'].map(async (s) => (await stat(`${f.raw}${s}`)).size));
  assert.ok(sizes.every((s) => s <= maxSize), `every file within max size: ${sizes}`);
  assert.deepEqual(f.warnings, []);
  t.diagnostic(`${all.length} lines, ${writer.rotations} rotations, raw files ${sizes.join(' + ')} bytes`);
});

test('rotations while no pump runs (vmlet down) are caught up from the backups, a line split by a rotation stays one', async (t) => {
  const f = await setup(t);
  const writer = new RotatingWriter(f.raw, 4096, 3);
  let pump = f.pump();
  await pump.start();
  const first = numbered(0, 50);
  await writer.write(Buffer.from(`${first.text}half a li`, 'latin1'));
  await waitForLines(f.log, 50);
  await pump.stop({ keepPartial: true }); // vmlet shuts down; the VM keeps writing
  const second = numbered(50, 120); // about 2.5 rotations of 4 KiB: within the 3 backups
  await writer.write(Buffer.from(`ne\n${second.text}`, 'latin1'));
  assert.ok(writer.rotations >= 2, `rotations: ${writer.rotations}`);
  pump = f.pump();
  await pump.start();
  const lines = await waitForLines(f.log, 50 + 1 + 120);
  assert.deepEqual(lines, [...first.lines, 'half a line', ...second.lines]);
  assert.deepEqual(f.warnings, []);
});

test('output rotated out of the last backup while no pump ran is gone; the pump goes on with what is left, in order', async (t) => {
  const f = await setup(t);
  const writer = new RotatingWriter(f.raw, 4096, 1);
  let pump = f.pump();
  await pump.start();
  const first = numbered(0, 10);
  await writer.write(Buffer.from(first.text, 'latin1'));
  await waitForLines(f.log, 10);
  await pump.stop();
  const second = numbered(10, 400); // many rotations with one backup
  await writer.write(Buffer.from(second.text, 'latin1'));
  pump = f.pump();
  await pump.start();
  const tail = numbered(410, 1);
  await writer.write(Buffer.from(tail.text, 'latin1'));
  await waitForLines(f.log, 11);
  await new Promise((r) => setTimeout(r, 200));
  const final = await logContents(f.log);
  assert.deepEqual(final.slice(0, 10), first.lines);
  assert.equal(final.at(-1), tail.lines[0]);
  // The loss shows as at most one line fragment (the rest of a line whose start is gone); every
  // whole line is in order, without repeats, and the newest ones (backup and live file) are all there.
  const whole = final.filter((l) => l.startsWith('line '));
  assert.ok(final.length - whole.length <= 1, `fragments: ${final.length - whole.length}`);
  const numbers = whole.map((l) => Number(/^line (\d+)/.exec(l)![1]));
  const bad = numbers.findIndex((v, i) => i > 0 && v <= numbers[i - 1]!);
  assert.equal(bad, -1, `in order, without repeats: ${JSON.stringify(whole.slice(Math.max(0, bad - 2), bad + 2))}`);
  const tailNumbers = numbers.slice(10);
  assert.ok(tailNumbers.length >= 60, `the backup's and the live file's lines: ${tailNumbers.length}`);
  assert.deepEqual(tailNumbers, Array.from({ length: tailNumbers.length }, (_, i) => 411 - tailNumbers.length + i), 'contiguous up to the last line');
  assert.ok(f.warnings.some((w) => /rotated away/.test(w)), 'the loss is logged');
  const lines = final;
  assert.ok(lines.length < 411, 'some output is gone');
});
