import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  IFNAME_MAX_LENGTH,
  bridgeMacFor,
  interfaceNames,
  isLocalUnicastMac,
  isVmletNetnsName,
  netnsNameFor,
  normalizeMac,
  vethMacFor,
} from '../../../src/network/names.js';
import { InvalidArgumentError } from '../../../src/errors.js';

/** Sandbox ids shaped like the real ones: 64 lower-case hex characters. */
function sandboxIds(count: number): string[] {
  return Array.from({ length: count }, (_, i) => createHash('sha256').update(`sandbox-${i}`).digest('hex'));
}

test('device names fit IFNAMSIZ and use only lower-case letters and digits', () => {
  for (const id of [...sandboxIds(50), 'a', 'x'.repeat(128)]) {
    for (const index of [0, 1, 9, 42, 99]) {
      const { bridge, tap } = interfaceNames(id, index);
      assert.ok(bridge.length <= IFNAME_MAX_LENGTH, bridge);
      assert.ok(tap.length <= IFNAME_MAX_LENGTH, tap);
      assert.match(bridge, /^vbr[0-9a-v]{9}\d\d$/);
      assert.match(tap, /^vtap[0-9a-v]{9}\d\d$/);
      // Bridge and TAP of one interface share the sandbox tag and the index.
      assert.equal(bridge.slice(3), tap.slice(4));
    }
  }
});

test('device names are deterministic', () => {
  const [id] = sandboxIds(1);
  assert.deepEqual(interfaceNames(id!, 3), interfaceNames(id!, 3));
  // Pinned: a changed scheme would orphan the devices of pods wired by an older netd.
  assert.deepEqual(interfaceNames('abc', 0), { bridge: 'vbrd5ll3ipg900', tap: 'vtapd5ll3ipg900' });
});

test('device names are unique across 10k sandboxes and their interfaces', () => {
  const taps = new Set<string>();
  const bridges = new Set<string>();
  const ids = sandboxIds(10_000);
  for (const id of ids) {
    for (const index of [0, 1, 2]) {
      const { bridge, tap } = interfaceNames(id, index);
      taps.add(tap);
      bridges.add(bridge);
    }
  }
  assert.equal(taps.size, ids.length * 3);
  assert.equal(bridges.size, ids.length * 3);
});

test('ids sharing a long prefix still get distinct names', () => {
  const a = `${'0'.repeat(63)}1`;
  const b = `${'0'.repeat(63)}2`;
  assert.notEqual(interfaceNames(a, 0).tap, interfaceNames(b, 0).tap);
  assert.notEqual(netnsNameFor(a), netnsNameFor(b));
});

test('netns names: short ids verbatim, long ids as prefix plus hash', () => {
  assert.equal(netnsNameFor('pod1'), 'vmlet-pod1');
  const [long] = sandboxIds(1);
  const name = netnsNameFor(long!);
  assert.match(name, /^vmlet-[0-9a-f]{8}[0-9a-v]{8}$/);
  assert.ok(name.startsWith(`vmlet-${long!.slice(0, 8)}`));
  assert.equal(netnsNameFor(long!), name);
  assert.ok(isVmletNetnsName(name));
  const names = new Set(sandboxIds(10_000).map(netnsNameFor));
  assert.equal(names.size, 10_000);
});

test('hostile ids and indexes are refused', () => {
  for (const bad of ['', '../etc', 'ABC', 'a b', 'a/b', 'x'.repeat(129), 'a\0']) {
    assert.throws(() => interfaceNames(bad, 0), InvalidArgumentError, bad);
    assert.throws(() => netnsNameFor(bad), InvalidArgumentError, bad);
  }
  for (const index of [-1, 100, 1.5, Number.NaN]) {
    assert.throws(() => interfaceNames('abc', index), InvalidArgumentError);
  }
});

test('vmlet netns names are recognised, others are not', () => {
  assert.ok(isVmletNetnsName('vmlet-test-1a2b'));
  for (const other of ['cni-1234', 'vmlet-', 'vmlet-../x', 'vmlet-A', 'vmlet-a-', `vmlet-${'a'.repeat(64)}`]) {
    assert.equal(isVmletNetnsName(other), false, other);
  }
});

test('veth MAC: locally administered unicast, deterministic, not the original', () => {
  const original = '0a:58:c6:12:05:07';
  for (const id of sandboxIds(200)) {
    for (const index of [0, 1]) {
      const mac = vethMacFor(id, index, original);
      assert.ok(isLocalUnicastMac(mac), mac);
      assert.notEqual(mac, original);
      assert.equal(vethMacFor(id, index, original), mac);
    }
    assert.notEqual(vethMacFor(id, 0, original), vethMacFor(id, 1, original));
  }
});

test('veth MAC steps aside when the original MAC is exactly the derived one', () => {
  const first = vethMacFor('abc', 0, '02:00:00:00:00:01');
  const again = vethMacFor('abc', 0, first.toUpperCase());
  assert.notEqual(again, first);
  assert.ok(isLocalUnicastMac(again));
});

test('bridge MAC avoids the MACs it is told to avoid', () => {
  const original = '0a:58:c6:12:05:07';
  const veth = vethMacFor('abc', 0, original);
  const bridge = bridgeMacFor('abc', 0, [original, veth]);
  assert.ok(isLocalUnicastMac(bridge));
  assert.notEqual(bridge, veth);
  assert.notEqual(bridge, original);
  assert.notEqual(bridgeMacFor('abc', 0, [bridge]), bridge);
});

test('MACs are validated and normalised', () => {
  assert.equal(normalizeMac('0A:58:C6:12:05:07'), '0a:58:c6:12:05:07');
  for (const bad of ['', '0a:58:c6:12:05', '0a-58-c6-12-05-07', 'zz:58:c6:12:05:07', '0a:58:c6:12:05:07:00']) {
    assert.throws(() => normalizeMac(bad), InvalidArgumentError, bad);
  }
  assert.equal(isLocalUnicastMac('02:00:00:00:00:01'), true);
  assert.equal(isLocalUnicastMac('03:00:00:00:00:01'), false);
  assert.equal(isLocalUnicastMac('00:16:3e:00:00:01'), false);
});
