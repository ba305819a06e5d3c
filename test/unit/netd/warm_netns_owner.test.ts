/** Two vmlets on one host: a starting netd collects only its own instance's unadopted warm netns. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WarmNetns, randomWarmNetnsName } from '../../../src/netd/warm_netns.js';
import { isOwnWarmNetns, isWarmNetnsName, warmNetnsName } from '../../../src/network/names.js';
import type { NetnsOps } from '../../../src/network/netns.js';
import type { SandboxNetworkRecords } from '../../../src/netd/records.js';
import type { TapBinding } from '../../../src/network/bindings/tap.js';
import type { IpRunner } from '../../../src/network/iproute.js';
import { silentLogger } from '../../../src/log.js';

const MINE = 'aaaaaaaa11112222';
const THEIRS = 'bbbbbbbb33334444';

test('warm netns names carry the owner: same shape as before, told apart by owner', () => {
  const mine = randomWarmNetnsName(MINE);
  assert.ok(isWarmNetnsName(mine));
  assert.match(mine, /^vmlet-warm-aaaaaaaa[0-9a-f]{8}$/);
  assert.ok(isOwnWarmNetns(mine, MINE));
  assert.ok(!isOwnWarmNetns(mine, THEIRS));
  assert.ok(!isOwnWarmNetns('vmlet-warm-nothex', MINE));
  assert.throws(() => warmNetnsName(MINE, 'zz'));
});

test('collectUnadopted deletes this owner\'s unadopted warm netns only, never another vmlet\'s or an adopted one', async () => {
  const existing = new Set([
    warmNetnsName(MINE, '00000001'), // mine, unadopted: goes
    warmNetnsName(MINE, '00000002'), // mine, adopted by a sandbox: stays
    warmNetnsName(THEIRS, '00000003'), // another instance's: stays
    'vmlet-0123456789abcdef', // a sandbox netns: stays
  ]);
  const deleted: string[] = [];
  const netns: NetnsOps = {
    exists: async (n) => existing.has(n),
    create: async (n) => `/run/netns/${n}`,
    delete: async (n) => void (deleted.push(n), existing.delete(n)),
    list: async () => [...existing],
  };
  const records = { values: () => [{ netnsName: warmNetnsName(MINE, '00000002') }] } as unknown as SandboxNetworkRecords;
  const warm = new WarmNetns({ netns, tapBinding: {} as TapBinding, ip: {} as IpRunner, records, logger: silentLogger, newName: () => 'unused', ownerId: MINE });
  await warm.collectUnadopted();
  assert.deepEqual(deleted, [warmNetnsName(MINE, '00000001')]);
});
