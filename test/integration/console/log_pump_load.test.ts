import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { open, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../../src/log.js';
import { ConsoleLogPump } from '../../../src/console/log_pump.js';
import { sharedPollMembers } from '../../../src/console/shared_poll.js';

const scratchDirs: string[] = [];
// Once every test's hooks have stopped its pumps: a pump stopping saves its state into the dir.
after(() => Promise.all(scratchDirs.map((dir) => rm(dir, { recursive: true, force: true }))));

async function scratch(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-console-load-'));
  scratchDirs.push(dir);
  return dir;
}

function lineCount(buf: Buffer): number {
  let n = 0;
  for (let i = buf.indexOf(0x0a); i >= 0; i = buf.indexOf(0x0a, i + 1)) n++;
  return n;
}

async function waitFor(what: string, done: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('200 idle pumps cost little CPU (default 1 s shared poll plus fs.watch)', async (t) => {
  const dir = await scratch();
  const pumps: ConsoleLogPump[] = [];
  t.after(async () => {
    await Promise.all(pumps.map((p) => p.stop()));
    assert.equal(sharedPollMembers(), 0);
  });
  const N = 200;
  for (let i = 0; i < N; i++) {
    const raw = join(dir, `raw-${i}`);
    await writeFile(raw, `boot line of vm ${i}\n`);
    const pump = new ConsoleLogPump({
      rawPath: raw,
      logPath: join(dir, 'logs', `${i}.log`),
      statePath: join(dir, `state-${i}.json`),
      logger: silentLogger,
    });
    pumps.push(pump);
    await pump.start();
  }
  assert.equal(sharedPollMembers(), N);
  // Let start-up work settle, then measure a quiet window.
  await new Promise((r) => setTimeout(r, 1500));
  const windowMs = 5000;
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  await new Promise((r) => setTimeout(r, windowMs));
  const cpu = process.cpuUsage(cpu0);
  const wall = performance.now() - wall0;
  const cpuMs = (cpu.user + cpu.system) / 1000;
  const percent = (cpuMs / wall) * 100;
  t.diagnostic(
    `idle CPU, ${N} pumps over ${wall.toFixed(0)} ms: user ${(cpu.user / 1000).toFixed(1)} ms, system ${(cpu.system / 1000).toFixed(1)} ms ` +
      `= ${percent.toFixed(2)}% of one core, ${((cpuMs / N / wall) * 1000 * 1000).toFixed(1)} µs CPU per pump per second`,
  );
  // Loose bound (the test runner itself is in this process too); the diagnostic carries the number.
  assert.ok(percent < 5, `idle pumps used ${percent.toFixed(2)}% of a core`);
  // Still live after the idle window: a late line shows up.
  await writeFile(join(dir, 'raw-7'), 'late line\n', { flag: 'a' });
  await waitFor('the late line', async () => lineCount(await readFile(join(dir, 'logs', '7.log'))) === 2, 3000);
  const stats = pumps[7]!.stats();
  assert.equal(stats.entriesWritten, 2);
});

test('throughput: 20 MiB of console lines', async (t) => {
  const dir = await scratch();
  const raw = join(dir, 'raw');
  const log = join(dir, 'pod', '0.log');
  await writeFile(raw, '');
  const pump = new ConsoleLogPump({ rawPath: raw, logPath: log, statePath: join(dir, 'state.json'), logger: silentLogger });
  t.after(() => pump.stop());
  await pump.start();
  const line = `${'x'.repeat(78)}\r\n`; // 80 bytes, like a full console row
  const chunk = Buffer.from(line.repeat(1024 * 1024 / 80 + 1).slice(0, 1024 * 1024 - ((1024 * 1024) % 80)));
  const linesPerChunk = chunk.length / 80;
  const chunks = 20;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const fh = await open(raw, 'a');
  try {
    for (let i = 0; i < chunks; i++) await fh.write(chunk);
  } finally {
    await fh.close();
  }
  // Watch the pump's counters, not the log file: re-reading 20 MiB while waiting would be the cost measured.
  await waitFor('all bytes', async () => pump.stats().bytesRead === chunk.length * chunks && pump.stats().pendingBytes === 0, 60_000);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const mib = (chunk.length * chunks) / 1024 / 1024;
  const stats = pump.stats();
  t.diagnostic(
    `${mib.toFixed(1)} MiB (${linesPerChunk * chunks} lines) in ${ms.toFixed(0)} ms = ${((mib / ms) * 1000).toFixed(1)} MiB/s, ` +
      `CPU ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms, ${stats.stateSaves} state saves`,
  );
  assert.equal(stats.bytesRead, chunk.length * chunks);
  await pump.stop();
  assert.equal(lineCount(await readFile(log)), linesPerChunk * chunks);
  const text = await readFile(log, 'latin1');
  assert.ok(text.split('\n', 3).slice(0, 2).every((l) => l.endsWith(` stdout F ${'x'.repeat(78)}`)));
});

test('a guest writing one byte per write (like the UART) is batched, not one save per byte', async (t) => {
  const dir = await scratch();
  const raw = join(dir, 'raw');
  const log = join(dir, 'pod', '0.log');
  await writeFile(raw, '');
  const pump = new ConsoleLogPump({ rawPath: raw, logPath: log, statePath: join(dir, 'state.json'), logger: silentLogger });
  t.after(() => pump.stop());
  await pump.start();
  const text = 'Welcome to the vmlet test guest\r\n'.repeat(60);
  const fh = await open(raw, 'a');
  try {
    for (const ch of Buffer.from(text)) await fh.write(Buffer.of(ch));
  } finally {
    await fh.close();
  }
  await waitFor('all lines', async () => lineCount(await readFile(log)) === 60, 10_000);
  const stats = pump.stats();
  t.diagnostic(`${text.length} one-byte writes -> ${stats.stateSaves} state saves, ${stats.entriesWritten} entries`);
  assert.equal(stats.entriesWritten, 60);
  assert.ok(stats.stateSaves < text.length / 10, `${stats.stateSaves} saves for ${text.length} bytes`);
});
