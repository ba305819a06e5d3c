import test from 'node:test';
import assert from 'node:assert/strict';
import { decodeClasslessRoutes, encodeClasslessRoutes } from '../../../../src/network/dhcp/classless_routes.js';
import { MalformedDhcpPacketError } from '../../../../src/network/dhcp/malformed.js';
import { InvalidArgumentError } from '../../../../src/errors.js';

// The destination descriptor table of RFC 3442 §3 (width, then the significant octets), each
// followed here by a router octet quad.
const rfc3442Vectors: Array<[string, string]> = [
  ['0.0.0.0/0', '00'],
  ['10.0.0.0/8', '08 0a'],
  ['10.0.0.0/24', '18 0a 00 00'],
  ['10.17.0.0/16', '10 0a 11'],
  ['10.27.129.0/24', '18 0a 1b 81'],
  ['10.229.0.128/25', '19 0a e5 00 80'],
  ['10.198.122.47/32', '20 0a c6 7a 2f'],
];

for (const [destination, descriptor] of rfc3442Vectors) {
  test(`option 121 encodes ${destination} as descriptor ${descriptor}`, () => {
    const encoded = encodeClasslessRoutes([{ destination, router: '198.18.3.1' }]);
    assert.equal(encoded.toString('hex'), `${descriptor.replaceAll(' ', '')}c6120301`);
    assert.deepEqual(decodeClasslessRoutes(encoded), [{ destination, router: '198.18.3.1' }]);
  });
}

test('option 121 concatenates routes in order, the default route included', () => {
  const routes = rfc3442Vectors.map(([destination], i) => ({ destination, router: `198.18.3.${i + 1}` }));
  const encoded = encodeClasslessRoutes(routes);
  assert.equal(
    encoded.toString('hex'),
    '00c6120301' + '080ac6120302' + '180a0000c6120303' + '100a11c6120304' + '180a1b81c6120305' +
      '190ae50080c6120306' + '200ac67a2fc6120307',
  );
  assert.deepEqual(decodeClasslessRoutes(encoded), routes);
});

test('option 121 refuses destinations with host bits and bad routers', () => {
  assert.throws(() => encodeClasslessRoutes([{ destination: '10.0.0.1/8', router: '10.0.0.1' }]), /host bits/);
  assert.throws(() => encodeClasslessRoutes([{ destination: '10.0.0.0/33', router: '10.0.0.1' }]), InvalidArgumentError);
  assert.throws(() => encodeClasslessRoutes([{ destination: '10.0.0.0/8', router: '10.0.0' }]), InvalidArgumentError);
  assert.throws(() => encodeClasslessRoutes([]), InvalidArgumentError);
});

const malformed: Array<[string, string, RegExp]> = [
  ['shorter than the 5-octet minimum', '00 c6 12 03', /minimum is 5/],
  ['width 33', '21 0a 00 00 00 00 c6 12 03 01', /width 33/],
  ['router cut short', '18 0a 1b 81 c6 12 03', /needs 8 octets, 7 remain/],
  ['second route cut short', '00 c6 12 03 01 10 0a', /offset 5 needs 7 octets, 2 remain/],
  ['bits beyond the width', '19 0a e5 00 81 c6 12 03 01', /bits set beyond \/25/],
];
for (const [name, value, message] of malformed) {
  test(`option 121 decode rejects ${name}`, () => {
    assert.throws(() => decodeClasslessRoutes(Buffer.from(value.replaceAll(' ', ''), 'hex')), (err: unknown) => {
      assert.ok(err instanceof MalformedDhcpPacketError);
      assert.match(err.message, message);
      return true;
    });
  });
}
