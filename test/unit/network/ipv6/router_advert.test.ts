import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../../../../src/errors.js';
import { decodeRouterAdvert, encodeRouterAdvert, type RouterAdvert } from '../../../../src/network/ipv6/router_advert.js';
import { assertGolden } from '../../../helpers/golden.js';

const advert: RouterAdvert = {
  curHopLimit: 64,
  managed: true,
  other: true,
  routerLifetime: 1800,
  reachableTime: 0,
  retransTimer: 0,
  sourceMac: '32:d3:d5:2d:a9:41',
  mtu: 1500,
  prefixes: [{ prefix: 'fd12:3456:789a:1::', length: 64, onLink: true, autonomous: false, validLifetime: 86_400, preferredLifetime: 86_400 }],
  routes: [{ prefix: 'fd00:99::', length: 48, lifetime: 1800 }, { prefix: 'fd00:98:1:2:3::', length: 80, lifetime: 1800 }],
  dns: { lifetime: 1800, servers: ['fd12:3456:789a:53::53'] },
  search: { lifetime: 1800, names: ['example.test'] },
};

test('a router advertisement: M and O flags, on-link prefix without A, MTU, routes, RDNSS, DNSSL (golden bytes, round trip)', () => {
  const bytes = encodeRouterAdvert(advert);
  // RFC 4861 §4.2: type 134, code 0, the checksum left to the kernel.
  assert.equal(bytes[0], 134);
  assert.equal(bytes[1], 0);
  assert.equal(bytes.readUInt16BE(2), 0);
  assert.equal(bytes[5], 0xc0);
  assert.equal(bytes.length % 8, 0);
  assert.deepEqual(decodeRouterAdvert(bytes), advert);
  const lines: string[] = [];
  for (let i = 0; i < bytes.length; i += 16) lines.push(bytes.subarray(i, i + 16).toString('hex').replace(/(..)(?!$)/g, '$1 '));
  assertGolden('network/ipv6/router-advert.hex', `${lines.join('\n')}\n`);
});

test('no default router, no DNS: the options are left out; bad values refused', () => {
  const bare = encodeRouterAdvert({ ...advert, routerLifetime: 0, routes: [], dns: undefined, search: undefined, sourceMac: undefined, mtu: undefined });
  assert.equal(bare.length, 16 + 32);
  assert.equal(decodeRouterAdvert(bare).routerLifetime, 0);
  assert.throws(() => encodeRouterAdvert({ ...advert, routerLifetime: 9001 }), InvalidArgumentError);
  assert.throws(() => encodeRouterAdvert({ ...advert, prefixes: [{ ...advert.prefixes[0]!, length: 129 }] }), InvalidArgumentError);
  assert.throws(() => encodeRouterAdvert({ ...advert, dns: { lifetime: 1, servers: ['198.18.0.1'] } }), InvalidArgumentError);
  assert.throws(() => encodeRouterAdvert({ ...advert, sourceMac: 'zz' }), InvalidArgumentError);
});
