import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBatch, parseJsonDocuments } from '../../../src/network/iproute.js';
import { InternalError, InvalidArgumentError } from '../../../src/errors.js';

test('batch lines are the arguments joined by spaces, one command a line', () => {
  assert.equal(
    formatBatch([
      ['link', 'set', 'dev', 'eth0', 'up'],
      ['route', 'replace', '255.255.255.255/32', 'dev', 'vbr1'],
    ]),
    'link set dev eth0 up\nroute replace 255.255.255.255/32 dev vbr1\n',
  );
  assert.equal(formatBatch([]), '');
});

test('arguments that would change how iproute2 splits a batch line are refused', () => {
  for (const bad of ['', 'a b', 'a\tb', 'a\nb', 'x#y', '"q"', "'q'", 'back\\', 'eth0\rdown']) {
    assert.throws(() => formatBatch([['link', 'set', 'dev', bad, 'up']]), InvalidArgumentError, JSON.stringify(bad));
  }
  assert.throws(() => formatBatch([[]]), InvalidArgumentError);
});

test('JSON documents are split by line and counted', () => {
  assert.deepEqual(parseJsonDocuments('[{"a":1}]\n[]\n\n[{"b":"x\\ny"}]\n', 3), [[{ a: 1 }], [], [{ b: 'x\ny' }]]);
  assert.throws(() => parseJsonDocuments('[]\n', 2), InternalError);
  assert.throws(() => parseJsonDocuments('[\n', 1), InternalError);
});
