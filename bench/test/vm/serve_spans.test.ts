/**
 * The span preload's mechanism on plain objects: roots, nested children, calls outside a root,
 * failures, and execFile (callback and promisified, after syncBuiltinESMExports as in the daemon).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import childProcess from 'node:child_process';
import { syncBuiltinESMExports } from 'node:module';
import { promisify } from 'node:util';
import { patchExecFile, setRecordSink, timed, wrapMethod } from '../../vm/serve_spans.js';
import type { RootSpanRecord } from '../../vm/span_record.js';

const records: RootSpanRecord[] = [];
setRecordSink((r) => records.push(r));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class Store {
  async put(): Promise<void> {
    await sleep(5);
  }
}
class Service {
  constructor(private readonly store: Store) {}
  async create(fail = false): Promise<string> {
    await this.store.put();
    await this.store.put();
    if (fail) throw new Error('boom');
    return 'id';
  }
}
wrapMethod(Service.prototype, 'create', 'Create', true);
wrapMethod(Store.prototype, 'put', 'record write');

test('a root records its children by path with calls, time and when they ran', async () => {
  records.length = 0;
  assert.equal(await new Service(new Store()).create(), 'id');
  assert.equal(records.length, 1);
  const r = records[0]!;
  assert.equal(r.root, 'Create');
  assert.equal(r.ok, true);
  const [calls, ms, start, end] = r.spans['record write']!;
  assert.equal(calls, 2);
  assert.ok(ms >= 8 && ms <= r.durMs, `${ms} ms within ${r.durMs}`);
  assert.ok(start >= 0 && end > start && end <= r.durMs + 0.5);
});

test('calls outside a root are not recorded; a failing root is recorded as not ok and still throws', async () => {
  records.length = 0;
  await new Store().put();
  assert.equal(records.length, 0);
  await assert.rejects(new Service(new Store()).create(true), /boom/);
  assert.equal(records.length, 1);
  assert.equal(records[0]!.ok, false);
  assert.throws(() => wrapMethod(Store.prototype, 'renamed', 'x'), /not a method any more/);
});

test('a root inside a root is a plain call, and sync functions work', async () => {
  records.length = 0;
  const inner = timed(() => 7, 'inner', true);
  const outer = timed(async () => inner() + 1, 'outer', true);
  assert.equal(await outer(), 8);
  assert.deepEqual(records.map((r) => r.root), ['outer']);
});

test('execFile is timed inside a root, with its promisified form intact', async () => {
  patchExecFile();
  syncBuiltinESMExports();
  const { execFile } = await import('node:child_process');
  assert.equal(execFile, childProcess.execFile);
  const run = promisify(execFile);
  records.length = 0;
  const root = timed(async () => {
    const { stdout } = await run('echo', ['hi']);
    await new Promise<void>((resolve, reject) => execFile('true', [], (err) => (err ? reject(err) : resolve())));
    return stdout;
  }, 'Exec', true);
  assert.equal(await root(), 'hi\n');
  assert.deepEqual(Object.keys(records[0]!.spans).sort(), ['exec echo hi', 'exec true']);
});
