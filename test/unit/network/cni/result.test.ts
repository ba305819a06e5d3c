import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assertGolden } from '../../../helpers/golden.js';
import { parseCniResult, parseCniResultText, toVmNetworkView } from '../../../../src/network/cni/result.js';
import { CniResultError } from '../../../../src/network/cni/errors.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'fixtures', 'cni', 'results');

function fixture(name: string): unknown {
  return JSON.parse(readFileSync(join(fixtures, `${name}.json`), 'utf8'));
}

for (const name of ['v0.3.0-bridge-dualstack', 'v0.3.1-ptp', 'v0.4.0-bridge', 'v1.0.0-bridge', 'v1.1.0-multinic']) {
  test(`result ${name}: model and VM view match the golden file`, () => {
    const result = parseCniResult(fixture(name));
    const view = toVmNetworkView(result, { ifName: 'eth0' });
    assertGolden(`network/cni/result-${name}.json`, `${JSON.stringify({ result, view }, null, 2)}\n`);
  });
}

test('0.3.0 ips "version" is checked against the address family', () => {
  const raw = fixture('v0.3.0-bridge-dualstack') as { ips: { version: string }[] };
  raw.ips[0]!.version = '6';
  assert.throws(() => parseCniResult(raw), (err: unknown) => err instanceof CniResultError && err.field === 'ips[0].version');
});

test('1.1.0 specifics survive parsing: interface mtu/pciID/socketPath, route mtu/advmss/priority/table/scope', () => {
  const r = parseCniResult(fixture('v1.1.0-multinic'));
  assert.equal(r.interfaces[1]!.mtu, 1450);
  assert.equal(r.interfaces[2]!.pciID, '0000:3b:02.1');
  assert.equal(r.interfaces[3]!.socketPath, '/run/vhost/vhu0.sock');
  assert.deepEqual(r.routes[0], { dst: '0.0.0.0/0', mtu: 1400, advmss: 1360, priority: 100 });
  assert.equal(r.routes[3]!.table, 100);
  assert.equal(r.routes[4]!.scope, 253);
});

test('a route in a table other than main is not given to any VM interface', () => {
  const view = toVmNetworkView(parseCniResult(fixture('v1.1.0-multinic')), { ifName: 'eth0' });
  assert.deepEqual(view.unassigned.routes.map((r) => r.dst), ['198.19.128.0/17']);
});

test('host-side interfaces are left out of the VM view; MACs are lower-cased', () => {
  const view = toVmNetworkView(parseCniResult(fixture('v0.3.0-bridge-dualstack')));
  assert.deepEqual(view.interfaces.map((i) => [i.name, i.mac]), [['eth0', '0a:58:c6:12:00:05']]);
});

const base = () => ({
  cniVersion: '1.0.0',
  interfaces: [{ name: 'eth0', mac: 'aa:bb:cc:dd:ee:ff', sandbox: '/run/netns/x' }],
  ips: [{ address: '198.18.0.2/24', interface: 0 }],
  routes: [{ dst: '0.0.0.0/0' }],
});

const bad: [string, (r: ReturnType<typeof base>) => unknown, string][] = [
  ['address without prefix', (r) => ((r.ips[0]!.address = '198.18.0.2'), r), 'ips[0].address'],
  ['prefix too long', (r) => ((r.ips[0]!.address = '198.18.0.2/33'), r), 'ips[0].address'],
  ['IPv6 prefix too long', (r) => ((r.ips[0]!.address = '2001:db8::1/129'), r), 'ips[0].address'],
  ['address not an IP', (r) => ((r.ips[0]!.address = '198.18.0.256/24'), r), 'ips[0].address'],
  ['interface index past the end', (r) => ((r.ips[0]!.interface = 1), r), 'ips[0].interface'],
  ['negative interface index', (r) => ((r.ips[0]!.interface = -1), r), 'ips[0].interface'],
  ['fractional interface index', (r) => ((r.ips[0]!.interface = 0.5), r), 'ips[0].interface'],
  ['gateway of the other family', (r) => ({ ...r, ips: [{ address: '198.18.0.2/24', gateway: '2001:db8::1' }] }), 'ips[0].gateway'],
  ['route dst not CIDR', (r) => ({ ...r, routes: [{ dst: 'default' }] }), 'routes[0].dst'],
  ['route gw not an IP', (r) => ({ ...r, routes: [{ dst: '0.0.0.0/0', gw: 'router' }] }), 'routes[0].gw'],
  ['bad MAC', (r) => ((r.interfaces[0]!.mac = 'aa:bb:cc:dd:ee'), r), 'interfaces[0].mac'],
  ['interface name with a slash', (r) => ((r.interfaces[0]!.name = 'a/b'), r), 'interfaces[0].name'],
  ['interface name too long', (r) => ((r.interfaces[0]!.name = 'abcdefghijklmnop'), r), 'interfaces[0].name'],
  ['unsupported version', (r) => ({ ...r, cniVersion: '0.2.0' }), 'cniVersion'],
  ['missing version', (r) => ({ ...r, cniVersion: undefined }), 'cniVersion'],
  ['ips not a list', (r) => ({ ...r, ips: {} }), 'ips'],
  ['nameserver not an IP', (r) => ({ ...r, dns: { nameservers: ['ns1.example'] } }), 'dns.nameservers[0]'],
  ['search domain with a newline', (r) => ({ ...r, dns: { search: ['a\nnameserver 1.2.3.4'] } }), 'dns.search[0]'],
  ['route mtu out of range', (r) => ({ ...r, routes: [{ dst: '0.0.0.0/0', mtu: 70000 }] }), 'routes[0].mtu'],
];
for (const [what, mutate, field] of bad) {
  test(`a result with ${what} is refused naming ${field}`, () => {
    assert.throws(
      () => parseCniResult(mutate(base())),
      (err: unknown) => err instanceof CniResultError && err.field === field,
    );
  });
}

test('a result that is not JSON is refused', () => {
  assert.throws(() => parseCniResultText('{"cniVersion":'), CniResultError);
});

test('a sandbox interface without a MAC cannot become a VM NIC', () => {
  const r = parseCniResult({ cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: '/run/netns/x' }] });
  assert.throws(() => toVmNetworkView(r), (err: unknown) => err instanceof CniResultError && err.field === 'interfaces[0].mac');
});

test('an IPAM-only result (no interfaces) keeps its IPs unassigned', () => {
  const r = parseCniResult({ cniVersion: '1.0.0', ips: [{ address: '198.18.0.2/24', gateway: '198.18.0.1' }], routes: [{ dst: '0.0.0.0/0' }] });
  const view = toVmNetworkView(r, { ifName: 'eth0' });
  assert.equal(view.interfaces.length, 0);
  assert.equal(view.unassigned.ips.length, 1);
  assert.equal(view.unassigned.routes.length, 1);
});

test('a gateway-less route takes the gateway of its interface address of the same family', () => {
  const view = toVmNetworkView(parseCniResult(fixture('v1.0.0-bridge')));
  assert.deepEqual(view.interfaces[0]!.routes, [{ destination: '0.0.0.0/0', gateway: '198.18.7.1' }]);
});
