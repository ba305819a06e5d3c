import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REAL_FSYNC, SyncBehind } from '../../../src/store/sync_behind.js';
import { RecordStore } from '../../../src/store/record_store.js';
import { silentLogger } from '../../../src/log.js';

function recordingSync(fail?: (path: string) => NodeJS.ErrnoException | undefined) {
  const calls: string[] = [];
  const run = async (kind: string, path: string) => {
    calls.push(`${kind} ${path}`);
    const err = fail?.(path);
    if (err) throw err;
  };
  return { calls, sync: { file: (p: string) => run('file', p), dir: (p: string) => run('dir', p) } };
}

test('SyncBehind: one batch per turn, files before their directories, flush waits for it', async () => {
  const { calls, sync } = recordingSync();
  const behind = new SyncBehind(() => assert.fail('no error expected'), sync);
  behind.add('/d', '/d/a.json');
  behind.add('/d', '/d/b.json');
  behind.add('/e');
  assert.deepEqual(calls, [], "nothing is synced on the caller's path");
  await behind.flush();
  assert.deepEqual(calls, ['file /d/a.json', 'file /d/b.json', 'dir /d', 'dir /e']);
  // Added while a batch runs: a second batch follows, and flush waits for that one too.
  behind.add('/d', '/d/c.json');
  await new Promise((r) => setImmediate(r));
  behind.add('/d', '/d/e.json');
  await behind.flush();
  assert.deepEqual(calls.slice(4), ['file /d/c.json', 'dir /d', 'file /d/e.json', 'dir /d']);
});

test('SyncBehind: a file gone since is not an error; any other failure is reported with its path', async () => {
  const errno = (code: string) => Object.assign(new Error(code), { code });
  const { sync } = recordingSync((p) => (p === '/d/gone.json' ? errno('ENOENT') : p === '/d/bad.json' ? errno('EIO') : undefined));
  const reported: string[] = [];
  const behind = new SyncBehind((err, path) => reported.push(`${path}: ${(err as NodeJS.ErrnoException).code}`), sync);
  behind.add('/d', '/d/gone.json');
  behind.add('/d', '/d/bad.json');
  await behind.flush();
  assert.deepEqual(reported, ['/d/bad.json: EIO']);
});

test('RecordStore with SyncBehind: a put is visible and atomic at once, and synced right after', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-syncbehind-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { calls, sync } = recordingSync();
  const behind = new SyncBehind(() => assert.fail('no error expected'), sync);
  const store = new RecordStore<{ id: string; n: number }>(dir, silentLogger, behind);
  await store.load();
  await store.put({ id: 'abc', n: 1 });
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'abc.json'), 'utf8')), { id: 'abc', n: 1 });
  assert.deepEqual(readdirSync(dir), ['abc.json'], 'no temp file left');
  await behind.flush();
  assert.deepEqual(calls, [`file ${join(dir, 'abc.json')}`, `dir ${dir}`]);
  await store.delete('abc');
  await behind.flush();
  assert.deepEqual(calls.slice(2), [`dir ${dir}`]);
  assert.deepEqual(readdirSync(dir), []);
});

test('SyncBehind with the real fsyncs: the written file and its directory are synced, without error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-syncbehind-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const errors: string[] = [];
  const synced: string[] = [];
  const spy = {
    file: async (p: string) => (synced.push(`file ${p}`), REAL_FSYNC.file(p)),
    dir: async (p: string) => (synced.push(`dir ${p}`), REAL_FSYNC.dir(p)),
  };
  const behind = new SyncBehind((err, path) => errors.push(`${path}: ${String(err)}`), spy);
  const store = new RecordStore<{ id: string }>(dir, silentLogger, behind);
  await store.load();
  await store.put({ id: 'real' });
  await behind.flush();
  assert.deepEqual(synced, [`file ${join(dir, 'real.json')}`, `dir ${dir}`]);
  assert.deepEqual(errors, []);
});
