import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { formatBatch } from '../../../../src/network/iproute.js';
import {
  addressRestoreCommand,
  parseRoutes,
  parseSnapshot,
  routeDeleteCommand,
  routeRestoreCommand,
  routeRestoreOrder,
  snapshotCommands,
} from '../../../../src/network/bindings/snapshot.js';
import { FailedPreconditionError, InternalError } from '../../../../src/errors.js';
import { assertGolden } from '../../../helpers/golden.js';

/** Real `ip -j -d -batch` output of snapshotCommands('eth0') for a veth with a varied setup. */
const docs = JSON.parse(readFileSync(new URL('../fixtures/veth-snapshot.json', import.meta.url), 'utf8')) as unknown[];

test('a snapshot records what someone configured and leaves out what the kernel made', () => {
  const snap = parseSnapshot('eth0', docs);
  assert.deepEqual(snap.link, {
    name: 'eth0',
    mtu: 1500,
    up: true,
    group: 0,
    kind: 'veth',
    mac: '0a:58:c6:12:05:07',
    addrGenMode: 'eui64',
    ifindex: 2,
  });
  assert.deepEqual(
    snap.links.map((l) => l.name),
    ['lo', 'eth0', 'o0'],
  );
  assert.deepEqual(
    snap.addresses.map((a) => `${a.local}/${a.prefixLength}${a.peer ? ` peer ${a.peer}` : ''}`),
    ['198.18.5.7/24', '198.18.6.1/32 peer 198.18.6.2', '198.18.5.8/24', '2001:db8::5/64', 'fe80::858:c6ff:fe12:507/64'],
  );
  assert.equal(snap.addresses[0]!.broadcast, '198.18.5.255');
  assert.equal(snap.addresses[1]!.label, 'eth0:p');
  assert.deepEqual(snap.addresses[3]!.flags, ['nodad']);
  // No connected (proto kernel), local, broadcast or multicast routes.
  assert.deepEqual(
    snap.routes.map((r) => `${r.dst}${r.gateway ? ` via ${r.gateway}` : ''} table ${r.table}`),
    [
      '10.78.0.0/16 table 100',
      '0.0.0.0/0 via 198.18.5.1 table main',
      '10.9.0.0/16 via 198.18.5.1 table main',
      '10.77.0.0/16 via 198.18.5.1 table main',
      '192.0.2.1/32 table main',
      '203.0.113.0/24 via 192.0.2.1 table main',
      '::/0 via 2001:db8::1 table main',
    ],
  );
});

test('restore and delete commands (golden)', () => {
  const snap = parseSnapshot('eth0', docs);
  const ordered = routeRestoreOrder(snap.routes);
  // Routes that make gateways reachable come before the routes that use them.
  assert.ok(ordered.findIndex((r) => r.dst === '192.0.2.1/32') < ordered.findIndex((r) => r.gateway === '192.0.2.1'));
  const script =
    '# snapshot commands\n' +
    formatBatch(snapshotCommands('eth0')) +
    '# address restore\n' +
    formatBatch(snap.addresses.map((a) => addressRestoreCommand(a, 'eth0'))) +
    '# route restore\n' +
    formatBatch(ordered.map((r) => routeRestoreCommand(r, 'eth0'))) +
    '# route delete (wiring runs the restore order backwards)\n' +
    formatBatch([...ordered].reverse().map((r) => routeDeleteCommand(r, 'eth0')));
  assertGolden('network/snapshot-commands.txt', script);
});

test('routes that cannot be put back exactly make planning fail loudly', () => {
  assert.throws(
    () => parseRoutes([{ type: 'unicast', dst: 'default', protocol: 'boot', nexthops: [] }], 4),
    FailedPreconditionError,
  );
  assert.throws(
    () => parseRoutes([{ type: 'unicast', dst: '10.0.0.0/8', metrics: [{ rtt: 5 }], flags: [] }], 4),
    FailedPreconditionError,
  );
});

test('malformed ip output is rejected, not turned into commands', () => {
  assert.throws(() => parseRoutes([{ dst: '10.0.0.0/8 dev x', flags: [] }], 4), InternalError);
  assert.throws(() => parseRoutes([{ dst: '10.0.0.0/33', flags: [] }], 4), InternalError);
  assert.throws(() => parseRoutes([{ dst: 'default', gateway: '1.2.3.4 via', flags: [] }], 4), InternalError);
  assert.throws(() => parseRoutes([{ dst: 'default', table: 'main x', flags: [] }], 4), InternalError);
  // An address listing without addr_info is what a batch prints after a `link show` line.
  assert.throws(() => parseSnapshot('eth0', [[{ ifname: 'eth0' }], [], [], docs[3]]), InternalError);
});
