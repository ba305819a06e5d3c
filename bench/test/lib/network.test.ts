import { test } from 'node:test';
import assert from 'node:assert/strict';
import { benchConflist, cidrRange, pickBenchSubnet, POD_ROUTE, requireUnrouted } from '../../lib/network.js';
import { parseConfigList } from '../../../src/network/cni/config.js';

test('cidrRange', () => {
  assert.deepEqual(cidrRange('198.19.5.0/24'), [0xc6130500, 0xc61305ff]);
  assert.deepEqual(cidrRange('198.19.5.7'), [0xc6130507, 0xc6130507]);
  assert.deepEqual(cidrRange('198.19.5.77/24'), [0xc6130500, 0xc61305ff]);
  assert.deepEqual(cidrRange('default'), [0, 0xffffffff]);
  assert.throws(() => cidrRange('198.19.5.0/33'), RangeError);
  assert.throws(() => cidrRange('300.1.1.1/8'), RangeError);
});

test('pickBenchSubnet skips routed /24s, wraps around, ignores default and /8-or-wider routes', () => {
  assert.equal(pickBenchSubnet([], 7), '198.19.7.0/24');
  assert.equal(pickBenchSubnet(['198.19.7.0/24', '198.19.8.1'], 7), '198.19.9.0/24');
  assert.equal(pickBenchSubnet(['198.19.255.0/24'], 255), '198.19.0.0/24');
  assert.equal(pickBenchSubnet(['default', '198.0.0.0/8', 'garbage'], 3), '198.19.3.0/24');
  // A /16 covering all of 198.19 leaves nothing.
  assert.throws(() => pickBenchSubnet(['198.19.0.0/16'], 0), /every \/24/);
});

test('the bench conflist is a valid CNI list with no masquerade and no route off the machine', () => {
  const conf = benchConflist({ networkName: 'vmlet-bench-abc', bridge: 'vbenchabc', subnet: '198.19.4.0/24', ipamDataDir: '/tmp/x/ipam' });
  const parsed = parseConfigList(conf);
  assert.ok(parsed.ok, JSON.stringify(parsed));
  const plugins = conf.plugins as Record<string, any>[];
  assert.deepEqual(plugins.map((p) => p.type), ['bridge']);
  assert.equal(plugins[0]!.ipMasq, false);
  assert.equal(plugins[0]!.ipam.type, 'host-local');
  assert.deepEqual(plugins[0]!.ipam.routes, [{ dst: POD_ROUTE }]);
  assert.deepEqual(plugins[0]!.ipam.ranges, [[{ subnet: '198.19.4.0/24' }]]);
  assert.equal(plugins[0]!.ipam.dataDir, '/tmp/x/ipam');
});

test('requireUnrouted takes a /24 no host route overlaps, ignores default and /8-or-wider routes', () => {
  assert.equal(requireUnrouted('198.19.60.0/24', ['default', '198.0.0.0/8', '198.19.61.0/24', 'garbage']), '198.19.60.0/24');
  assert.throws(() => requireUnrouted('198.19.60.0/24', ['198.19.60.128/25']), /overlaps the host route 198\.19\.60\.128\/25/);
  assert.throws(() => requireUnrouted('198.19.60.0/24', ['198.19.0.0/16']), /--subnet-prefix/);
});
