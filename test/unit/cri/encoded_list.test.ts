import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadCriServices } from '../../../src/cri/proto.js';
import { RepeatedFieldEncoder, EncodedMessage, acceptEncoded } from '../../../src/cri/encoded_list.js';

const list = loadCriServices().runtimeService.ListPodSandbox;
const serialize = list.responseSerialize as (v: object) => Buffer;

function item(i: number) {
  return {
    id: i.toString(16).padStart(64, '0'),
    metadata: { name: `pod-${i}`, uid: `uid-${i}`, namespace: 'default', attempt: i % 3 },
    state: i % 2 ? 'SANDBOX_NOTREADY' : 'SANDBOX_READY',
    created_at: (1_795_426_394_500_818_143n + BigInt(i)).toString(),
    labels: { app: 'x', n: String(i) },
    annotations: { note: 'é ünïcode' },
    runtime_handler: '',
  };
}

test('concatenated cached items encode exactly as the whole response would', () => {
  const records = Array.from({ length: 50 }, (_, i) => ({ i }));
  const enc = new RepeatedFieldEncoder<{ i: number }>(serialize, 'items', (r) => item(r.i));
  const got = enc.encode(records).bytes;
  assert.deepEqual(got, serialize({ items: records.map((r) => item(r.i)) }));
  // And it decodes back to the same items through the client-side deserializer.
  const decoded = list.responseDeserialize(got) as { items: { id: string; created_at: string }[] };
  assert.equal(decoded.items.length, 50);
  assert.equal(decoded.items[7]!.created_at, '1795426394500818150');
  assert.deepEqual(enc.encode([]).bytes, serialize({ items: [] }));
});

test('a record is encoded once until it is replaced', () => {
  let calls = 0;
  const enc = new RepeatedFieldEncoder<{ i: number }>(serialize, 'items', (r) => (calls++, item(r.i)));
  const a = { i: 1 };
  const b = { i: 2 };
  enc.encode([a, b]);
  enc.encode([a, b]);
  assert.equal(calls, 2);
  enc.encode([{ ...a }, b]); // a replaced record object: encoded again
  assert.equal(calls, 3);
});

test('the wrapped serializer passes EncodedMessage bytes through and encodes plain objects', () => {
  const wrapped = acceptEncoded(list);
  const bytes = Buffer.from([0x0a, 0x00]);
  assert.equal(wrapped.responseSerialize(new EncodedMessage(bytes)), bytes);
  assert.deepEqual(wrapped.responseSerialize({ items: [item(3)] }), serialize({ items: [item(3)] }));
});
