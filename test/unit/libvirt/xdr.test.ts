import { test } from 'node:test';
import assert from 'node:assert/strict';
import { XdrError, XdrReader, XdrWriter } from '../../../src/libvirt/rpc/xdr.js';

function hex(buf: Buffer): string {
  return buf.toString('hex');
}

function reader(h: string): XdrReader {
  return new XdrReader(Buffer.from(h.replace(/\s/g, ''), 'hex'));
}

test('int and unsigned int: big-endian 32-bit words, round trip at the limits', () => {
  const w = new XdrWriter(4); // small start so the buffer must grow
  w.int(0).int(1).int(-1).int(-0x8000_0000).int(0x7fff_ffff).uint(0).uint(0xffff_ffff).uint(0x20008086);
  assert.equal(hex(w.finish()), '00000000' + '00000001' + 'ffffffff' + '80000000' + '7fffffff' + '00000000' + 'ffffffff' + '20008086');
  const r = new XdrReader(w.finish());
  assert.deepEqual(
    [r.int(), r.int(), r.int(), r.int(), r.int(), r.uint(), r.uint(), r.uint()],
    [0, 1, -1, -0x8000_0000, 0x7fff_ffff, 0, 0xffff_ffff, 0x20008086],
  );
  r.end();
});

test('int and unsigned int refuse out-of-range and non-integer values', () => {
  const w = new XdrWriter();
  assert.throws(() => w.int(0x8000_0000), XdrError);
  assert.throws(() => w.int(-0x8000_0001), XdrError);
  assert.throws(() => w.int(1.5), XdrError);
  assert.throws(() => w.int(Number.NaN), XdrError);
  assert.throws(() => w.uint(-1), XdrError);
  assert.throws(() => w.uint(0x1_0000_0000), XdrError);
  assert.equal(w.length, 0, 'a refused value writes nothing');
});

test('hyper and unsigned hyper stay exact as bigint beyond 2^53', () => {
  const big = (1n << 64n) - 1n;
  const above53 = (1n << 53n) + 1n;
  const w = new XdrWriter();
  w.hyper(-1n).hyper(-(1n << 63n)).hyper((1n << 63n) - 1n).uhyper(big).uhyper(above53);
  assert.equal(
    hex(w.finish()),
    'ffffffffffffffff' + '8000000000000000' + '7fffffffffffffff' + 'ffffffffffffffff' + '0020000000000001',
  );
  const r = new XdrReader(w.finish());
  assert.equal(r.hyper(), -1n);
  assert.equal(r.hyper(), -(1n << 63n));
  assert.equal(r.hyper(), (1n << 63n) - 1n);
  assert.equal(r.uhyper(), big);
  assert.equal(r.uhyper(), above53);
  r.end();
  assert.throws(() => new XdrWriter().uhyper(-1n), XdrError);
  assert.throws(() => new XdrWriter().uhyper(1n << 64n), XdrError);
  assert.throws(() => new XdrWriter().hyper(1n << 63n), XdrError);
  assert.throws(() => new XdrWriter().hyper(1 as unknown as bigint), XdrError);
});

test('bool encodes as 0/1 and a decoder refuses other values', () => {
  const w = new XdrWriter().bool(true).bool(false);
  assert.equal(hex(w.finish()), '0000000100000000');
  const r = new XdrReader(w.finish());
  assert.equal(r.bool(), true);
  assert.equal(r.bool(), false);
  assert.throws(() => reader('00000002').bool(), XdrError);
});

test('double is IEEE 754 big-endian', () => {
  const w = new XdrWriter().double(1.5).double(-0.1);
  assert.equal(hex(w.finish()).slice(0, 16), '3ff8000000000000');
  const r = new XdrReader(w.finish());
  assert.equal(r.double(), 1.5);
  assert.equal(r.double(), -0.1);
});

test('string: length word, UTF-8 bytes, zero padding to 4 (RFC 4506 example "sillyprog")', () => {
  const w = new XdrWriter().string('sillyprog', 100);
  assert.equal(hex(w.finish()), '00000009' + '73696c6c' + '7970726f' + '67000000');
  assert.equal(new XdrReader(w.finish()).string(100), 'sillyprog');
  for (const s of ['', 'a', 'ab', 'abc', 'abcd', 'grüße ✓']) {
    const buf = new XdrWriter().string(s, 100).finish();
    assert.equal(buf.length % 4, 0, `padded: ${s}`);
    const r = new XdrReader(buf);
    assert.equal(r.string(100), s);
    r.end();
  }
});

test('string and opaque enforce their maximum length both ways', () => {
  assert.throws(() => new XdrWriter().string('abcde', 4), XdrError);
  assert.throws(() => new XdrWriter().opaque(Buffer.alloc(5), 4), XdrError);
  assert.throws(() => reader('00000005 6162636465000000').string(4), XdrError);
  assert.throws(() => reader('00000005 6162636465000000').opaque(4), XdrError);
});

test('a length beyond the data is refused, not allocated', () => {
  assert.throws(() => reader('7fffffff 61626364').string(0x7fff_ffff), /truncated/);
  assert.throws(() => reader('00000008 61626364').opaque(100), /truncated/);
  assert.throws(() => reader('000000').int(), /truncated/);
  assert.throws(() => reader('0000000000000').uhyper(), /truncated/);
});

test('fixed and variable opaque round trip with padding', () => {
  const uuid = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  const w = new XdrWriter().opaqueFixed(uuid, 16).opaqueFixed(Buffer.from([1, 2, 3]), 3).opaque(Buffer.from([9, 8, 7, 6, 5]), 10);
  assert.equal(hex(w.finish()), hex(uuid) + '01020300' + '00000005' + '0908070605000000');
  const r = new XdrReader(w.finish());
  assert.deepEqual(r.opaqueFixed(16), uuid);
  assert.deepEqual(r.opaqueFixed(3), Buffer.from([1, 2, 3]));
  assert.deepEqual(r.opaque(10), Buffer.from([9, 8, 7, 6, 5]));
  r.end();
  assert.throws(() => new XdrWriter().opaqueFixed(Buffer.alloc(15), 16), XdrError);
});

test('optional data: FALSE when absent, TRUE then the value when present', () => {
  const w = new XdrWriter();
  w.optional(null, (x, v: string) => x.string(v, 10));
  w.optional(undefined, (x, v: string) => x.string(v, 10));
  w.optional('hi', (x, v) => x.string(v, 10));
  assert.equal(hex(w.finish()), '00000000' + '00000000' + '00000001' + '00000002' + '68690000');
  const r = new XdrReader(w.finish());
  assert.equal(r.optional((x) => x.string(10)), null);
  assert.equal(r.optional((x) => x.string(10)), null);
  assert.equal(r.optional((x) => x.string(10)), 'hi');
  r.end();
});

test('arrays: count then items; bounded by maximum and by the bytes present', () => {
  const w = new XdrWriter().array([3, -4, 5], 10, (x, n) => x.int(n));
  assert.equal(hex(w.finish()), '00000003' + '00000003' + 'fffffffc' + '00000005');
  const r = new XdrReader(w.finish());
  assert.deepEqual(
    r.array(10, (x) => x.int()),
    [3, -4, 5],
  );
  r.end();
  assert.throws(() => new XdrWriter().array([1, 2, 3], 2, (x, n) => x.int(n)), XdrError);
  assert.throws(() => reader('00000003 00000001 00000002 00000003').array(2, (x) => x.int()), /exceeds/);
  // A count of a million items with 8 bytes behind it is refused before any item is decoded.
  assert.throws(() => reader('000f4240 00000001 00000002').array(2_000_000, (x) => x.int()), /claims/);
});

test('end() detects trailing bytes', () => {
  const r = reader('00000001 00000002');
  r.int();
  assert.throws(() => r.end(), /trailing/);
  r.int();
  r.end();
});
