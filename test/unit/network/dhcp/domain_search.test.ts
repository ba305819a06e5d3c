import test from 'node:test';
import assert from 'node:assert/strict';
import { decodeDomainSearch, encodeDomainSearch } from '../../../../src/network/dhcp/domain_search.js';
import { MalformedDhcpPacketError } from '../../../../src/network/dhcp/malformed.js';
import { InvalidArgumentError } from '../../../../src/errors.js';

const ascii = (text: string) => Buffer.from(text, 'latin1').toString('hex');

// RFC 3397 §3: "eng.apple.com." and "marketing.apple.com.", the second pointing at "apple.com" (offset 4).
const rfc3397Example =
  `03${ascii('eng')}05${ascii('apple')}03${ascii('com')}00` + `09${ascii('marketing')}c004`;

test('option 119 encodes the RFC 3397 example with the same compression', () => {
  assert.equal(encodeDomainSearch(['eng.apple.com', 'marketing.apple.com']).toString('hex'), rfc3397Example);
  assert.equal(encodeDomainSearch(['eng.apple.com.', 'marketing.apple.com.']).toString('hex'), rfc3397Example);
});

test('option 119 decodes the RFC 3397 example', () => {
  assert.deepEqual(decodeDomainSearch(Buffer.from(rfc3397Example, 'hex')), ['eng.apple.com', 'marketing.apple.com']);
});

test('option 119 decodes an uncompressed list too (compression is optional)', () => {
  const plain = `03${ascii('eng')}05${ascii('apple')}03${ascii('com')}00` + `09${ascii('marketing')}05${ascii('apple')}03${ascii('com')}00`;
  assert.deepEqual(decodeDomainSearch(Buffer.from(plain, 'hex')), ['eng.apple.com', 'marketing.apple.com']);
});

test('option 119 compresses a Kubernetes search list to whole-name pointers where possible', () => {
  const names = ['default.svc.cluster.local', 'svc.cluster.local', 'cluster.local'];
  const encoded = encodeDomainSearch(names);
  // default(8) svc(4) cluster(8) local(6) root(1) = 27, then two 2-octet pointers.
  assert.equal(
    encoded.toString('hex'),
    `07${ascii('default')}03${ascii('svc')}07${ascii('cluster')}05${ascii('local')}00` + 'c008' + 'c00c',
  );
  assert.deepEqual(decodeDomainSearch(encoded), names);
});

test('option 119 keeps a repeated name and names sharing no suffix', () => {
  const names = ['a.example', 'b.test', 'a.example'];
  const encoded = encodeDomainSearch(names);
  assert.deepEqual(decodeDomainSearch(encoded), names);
  assert.equal(encoded.subarray(-2).toString('hex'), 'c000');
});

test('option 119 refuses invalid names on encode', () => {
  for (const bad of ['', '.', 'a..b', `${'x'.repeat(64)}.com`, 'bad label.com', '-a.com', `${'abcdefghi.'.repeat(26)}com`]) {
    assert.throws(() => encodeDomainSearch([bad]), InvalidArgumentError, bad);
  }
  assert.throws(() => encodeDomainSearch([]), InvalidArgumentError);
});

const malformed: Array<[string, string, RegExp]> = [
  ['an empty option', '', /empty/],
  ['a name without its terminating zero', `03${ascii('com')}`, /runs past the end/],
  ['a label longer than the option', `09${ascii('abc')}`, /label at offset 0 runs past the end/],
  ['a pointer to itself', 'c000', /does not point backwards/],
  ['a forward pointer', `c002 03${ascii('com')}00`, /does not point backwards/],
  ['a pointer loop through an earlier name', `03${ascii('com')}c000` + 'c000', /does not point backwards/],
  ['a truncated pointer', `03${ascii('com')}00 c0`, /truncated/],
  ['reserved label type bits', `43${ascii('com')}00`, /reserved type bits/],
  ['the root name', '00', /empty \(root\) name/],
  ['a name longer than 255 octets', `3f${'61'.repeat(63)}`.repeat(4) + '00', /exceeds 255/],
];
for (const [name, value, message] of malformed) {
  test(`option 119 decode rejects ${name}`, () => {
    assert.throws(() => decodeDomainSearch(Buffer.from(value.replaceAll(' ', ''), 'hex')), (err: unknown) => {
      assert.ok(err instanceof MalformedDhcpPacketError, String(err));
      assert.match(err.message, message);
      return true;
    });
  });
}
