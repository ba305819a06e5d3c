import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockRing } from '../../../src/image/block_ring.js';

test('BlockRing: seals full blocks in order, waits for a free block, flushes the partial one', async () => {
  const sealed: { slot: number; bytes: string }[] = [];
  const ring: BlockRing = new BlockRing(4, 2, false, (slot, length) => sealed.push({ slot, bytes: ring.block(slot, length).toString() }));
  assert.equal(ring.write(Buffer.from('abcdef')), undefined, 'one block sealed, the second being filled: no wait');
  assert.deepEqual(sealed, [{ slot: 0, bytes: 'abcd' }]);
  assert.ok(ring.isOut(0));
  assert.ok(!ring.isOut(1), 'the block being filled is not out');

  let resumed = false;
  const waiting = ring.write(Buffer.from('ghijkl'));
  assert.ok(waiting instanceof Promise, 'every block out: the writer waits');
  void waiting.then(() => (resumed = true));
  assert.deepEqual(sealed.map((s) => s.bytes), ['abcd', 'efgh']);
  await new Promise((r) => setImmediate(r));
  assert.equal(resumed, false);

  ring.release(0);
  await waiting;
  assert.equal(resumed, true);
  ring.flush();
  assert.deepEqual(sealed.map((s) => `${s.slot}:${s.bytes}`), ['0:abcd', '1:efgh', '0:ijkl']);

  ring.release(1);
  ring.release(0);
  ring.write(Buffer.from('mn'));
  ring.flush();
  assert.deepEqual(sealed.at(-1), { slot: 1, bytes: 'mn' }, 'the partial block is sealed with its length');
  ring.release(1);
  ring.flush();
  assert.equal(sealed.length, 4, 'an empty flush seals nothing');
});

test('BlockRing: fail rejects the waiting writer and every later write; shared memory when asked', async () => {
  const ring = new BlockRing(2, 1, true, () => undefined);
  assert.ok(ring.buffer instanceof SharedArrayBuffer);
  const waiting = ring.write(Buffer.from('abc'));
  assert.ok(waiting instanceof Promise);
  ring.fail(new Error('boom'));
  await assert.rejects(waiting, /boom/);
  await assert.rejects(Promise.resolve(ring.write(Buffer.from('x'))), /boom/);
  assert.ok(new BlockRing(2, 1, false, () => undefined).buffer instanceof ArrayBuffer);
});
