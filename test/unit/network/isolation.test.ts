import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  DhcpIsolation,
  ISOLATION_RULES,
  SERVER_REDIRECT_RULE,
  isolationRemovalScript,
  isolationScript,
  isolationTableName,
  parseIsolationStatus,
} from '../../../src/network/isolation.js';
import { ToolFailedError } from '../../../src/network/iproute.js';
import { FailedPreconditionError, InvalidArgumentError } from '../../../src/errors.js';
import { assertGolden } from '../../helpers/golden.js';
import { FakeNftRunner } from './fakes.js';

const spec = { uplink: 'eth0', bridge: 'vbrk2n251p6k00', bridgeMac: '02:6a:00:00:00:01', tap: 'vtapk2n251p6k00' };
/** Real `nft -j list table` output after installing spec's rules twice. */
const listing = JSON.parse(readFileSync(new URL('./fixtures/isolation-listing.json', import.meta.url), 'utf8'));

test('install and removal scripts (golden)', () => {
  assert.equal(isolationTableName(spec), 'vmlet-vbrk2n251p6k00');
  assertGolden('network/isolation-install.nft', isolationScript(spec));
  assertGolden('network/isolation-remove.nft', isolationRemovalScript(spec));
});

test('interface names that could break out of an nft string are refused', () => {
  for (const uplink of ['eth0"', 'a b', 'x;y', 'x\\', 'e#0', 'a'.repeat(16)]) {
    assert.throws(() => isolationScript({ uplink, bridge: 'vbr1' }), InvalidArgumentError, uplink);
  }
});

test('status reads every rule and its counter from a real listing', () => {
  const status = parseIsolationStatus(listing, spec);
  assert.equal(status.complete, true);
  assert.deepEqual(Object.keys(status.counters).sort(), [...ISOLATION_RULES.map((r) => r.comment), SERVER_REDIRECT_RULE.comment].sort());
  // Without the bridge MAC the redirect is not expected, so a table that has it is not the one asked for.
  const { bridgeMac: _, ...withoutMac } = spec;
  assert.equal(parseIsolationStatus(listing, withoutMac).complete, false);
  assert.equal(parseIsolationStatus(listing, { ...spec, bridgeMac: '02:6a:00:00:00:02' }).complete, false);
  // The redirect takes the frames of this bridge's TAP only: one naming another port is not ours.
  assert.equal(parseIsolationStatus(listing, { ...spec, tap: 'vtapk2n251p6k01' }).complete, false);
  assert.deepEqual(status.counters['dhcp-from-uplink'], { packets: 0, bytes: 0 });
});

test('the redirect matches the VM\'s TAP, not "anything but the uplink": bridge hooks see every bridge of the netns', () => {
  const script = isolationScript(spec);
  assert.match(script, /\tiifname "vtapk2n251p6k00" ip daddr 169\.254\.67\.67 udp dport 67 counter ether daddr set 02:6a:00:00:00:01 /);
  assert.doesNotMatch(script, /!=/);
  const { tap: _, ...withoutTap } = spec;
  assert.throws(() => isolationScript(withoutTap), /without the TAP/);
  assert.throws(() => isolationScript({ ...spec, tap: 'vtap"x' }), InvalidArgumentError);
});

test('status is incomplete when a rule is missing, duplicated or about another uplink', () => {
  const items = listing.nftables as { rule?: { comment?: string } }[];
  const without = { nftables: items.filter((i) => i.rule?.comment !== 'dhcp-to-uplink') };
  assert.equal(parseIsolationStatus(without, spec).complete, false);
  const withoutRedirect = { nftables: items.filter((i) => i.rule?.comment !== 'dhcp-to-server-address') };
  assert.equal(parseIsolationStatus(withoutRedirect, spec).complete, false);
  const dup = { nftables: [...items, items.find((i) => i.rule?.comment === 'dhcp-to-uplink')] };
  assert.equal(parseIsolationStatus(dup, spec).complete, false);
  assert.equal(parseIsolationStatus(listing, { ...spec, uplink: 'net1' }).complete, false);
});

test('DhcpIsolation applies the scripts and tolerates a netns that is gone on removal', async () => {
  const nft = new FakeNftRunner();
  const iso = new DhcpIsolation(nft);
  await iso.install('vmlet-a', spec);
  await iso.remove('vmlet-a', spec);
  assert.deepEqual(
    nft.scripts.map((s) => [s.netns, s.script]),
    [
      ['vmlet-a', isolationScript(spec)],
      ['vmlet-a', isolationRemovalScript(spec)],
    ],
  );
  nft.onApply = () => {
    throw new ToolFailedError('nsenter', [], 1, 'nsenter: cannot open /run/netns/vmlet-a: No such file or directory\n');
  };
  await iso.remove('vmlet-a', spec);
  nft.onApply = () => {
    throw new ToolFailedError('nsenter', [], 1, 'Error: Could not process rule: Operation not permitted\n');
  };
  await assert.rejects(iso.remove('vmlet-a', spec), ToolFailedError);
});

test('verify fails when the table is missing and passes when it is complete', async () => {
  const nft = new FakeNftRunner();
  const iso = new DhcpIsolation(nft);
  await assert.rejects(iso.verify('vmlet-a', spec), FailedPreconditionError);
  nft.listing = listing;
  await iso.verify('vmlet-a', spec);
});
