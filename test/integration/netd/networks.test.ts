/**
 * A pod on two networks through netd with Debian's real plugins: bridge + host-local for both,
 * tuning for the MAC the Multus JSON asks for. Subnets 198.18.151.0/24 and 198.18.152.0/24 on
 * bridges of their own; every test checks that nothing is left (netns, host links, IPAM files,
 * records, CNI cache).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.js';
import { silentLogger } from '../../../src/log.js';
import { NetworkManager } from '../../../src/netd/manager.js';
import { netnsNameFor } from '../../../src/network/names.js';
import { sandboxParams } from './bridge_network.js';

const tag = randomBytes(3).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'vmlet-netd-networks-'));
const confDir = join(dir, 'cni');
const ipamDir = join(dir, 'ipam');
mkdirSync(confDir);
const nets = [
  { name: `vt-main-${tag}`, bridge: `vtm${tag}`, subnet: '198.18.151.0/24', file: '10-main.conflist', tuning: false },
  { name: `vt-side-${tag}`, bridge: `vts${tag}`, subnet: '198.18.152.0/24', file: '20-side.conflist', tuning: true },
];
for (const n of nets) {
  writeFileSync(join(confDir, n.file), JSON.stringify({
    cniVersion: '1.0.0',
    name: n.name,
    plugins: [
      { type: 'bridge', bridge: n.bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet: n.subnet }]], routes: [{ dst: '0.0.0.0/0' }] } },
      ...(n.tuning ? [{ type: 'tuning', capabilities: { mac: true } }] : []),
    ],
  }));
}
const config = loadConfig({ flags: { 'state-dir': join(dir, 'state'), 'cni-conf-dir': confDir, 'log-level': 'silent' } });

after(() => {
  for (const n of nets) {
    try {
      execFileSync('ip', ['link', 'del', n.bridge], { stdio: 'ignore' });
    } catch {
      /* never created */
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

function ipamLeases(): string[] {
  return nets.flatMap((n) => (existsSync(join(ipamDir, n.name)) ? readdirSync(join(ipamDir, n.name)).filter((f) => /^\d+\./.test(f)) : []));
}

function hostVeths(bridge: string): string[] {
  try {
    return (JSON.parse(execFileSync('ip', ['-j', 'link', 'show', 'master', bridge], { encoding: 'utf8' })) as { ifname: string }[]).map((l) => l.ifname);
  } catch {
    return [];
  }
}

test('Multus JSON: eth0 on the default network, side0 on the second with the MAC asked for; one default route; nothing left', { timeout: 60_000 }, async () => {
  const manager = new NetworkManager(config, silentLogger);
  await manager.load();
  const p = { ...sandboxParams(), annotations: { 'k8s.v1.cni.cncf.io/networks': JSON.stringify([{ name: nets[1]!.name, interface: 'side0', mac: '02:00:c6:12:98:07' }]) } };
  try {
    const setup = await manager.setup(p);
    assert.equal(setup.podIps.length, 1);
    assert.match(setup.podIps[0]!, /^198\.18\.151\./);
    const vm = await manager.vmNetwork({ sandboxId: p.sandboxId });
    assert.ok(vm.ready, JSON.stringify(vm));
    const [eth0, side0] = vm.network.interfaces;
    assert.deepEqual(vm.network.interfaces.map((i) => i.name), ['eth0', 'side0']);
    assert.equal(side0!.mac, '02:00:c6:12:98:07', 'the tuning plugin set the MAC the annotation asked for, and the VM takes it');
    assert.equal(eth0!.ips[0]!.gateway, '198.18.151.1');
    assert.deepEqual(eth0!.routes.map((r) => r.destination), ['0.0.0.0/0']);
    assert.match(side0!.ips[0]!.address, /^198\.18\.152\./);
    assert.equal(side0!.ips[0]!.gateway, undefined);
    assert.deepEqual(side0!.routes, [], 'the second network gives no default route');
    const status = await manager.status({ sandboxId: p.sandboxId });
    assert.deepEqual(status?.networkStatus?.map((e) => [e.name, e.interface, e.mac, e.default, e.ips.length]), [
      [nets[0]!.name, 'eth0', eth0!.mac, true, 1],
      [nets[1]!.name, 'side0', '02:00:c6:12:98:07', false, 1],
    ]);
    assert.equal((status?.dhcp as { leases: unknown[] }).leases.length, 2, 'one lease per interface');
    assert.equal(hostVeths(nets[0]!.bridge).length, 1);
    assert.equal(hostVeths(nets[1]!.bridge).length, 1);
  } finally {
    await manager.teardown({ sandboxId: p.sandboxId });
    await manager.close();
  }
  assert.equal(existsSync(`/run/netns/${netnsNameFor(p.sandboxId)}`), false, 'netns left');
  assert.deepEqual(ipamLeases(), [], 'IPAM lease left');
  assert.deepEqual(nets.flatMap((n) => hostVeths(n.bridge)), [], 'host veth left');
  assert.deepEqual(readdirSync(config.cniCacheDir).filter((f) => f.endsWith('.json')), [], 'CNI cache left');
});

test('the second network failing to ADD rolls back the first: no netns, no IPAM lease, no host veth', { timeout: 60_000 }, async () => {
  const manager = new NetworkManager(config, silentLogger);
  await manager.load();
  // tuning refuses an invalid MAC at ADD, after the bridge plugin of the second network ran.
  const p = { ...sandboxParams(), annotations: { cni: `${nets[0]!.name},${nets[1]!.name}` } };
  writeFileSync(join(confDir, nets[1]!.file), JSON.stringify({
    cniVersion: '1.0.0', name: nets[1]!.name,
    plugins: [
      { type: 'bridge', bridge: nets[1]!.bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet: nets[1]!.subnet }]] } },
      { type: 'tuning', mac: 'not-a-mac' },
    ],
  }));
  try {
    await assert.rejects(manager.setup(p), /tuning/);
  } finally {
    await manager.close();
  }
  assert.equal(existsSync(`/run/netns/${netnsNameFor(p.sandboxId)}`), false, 'netns left');
  assert.deepEqual(ipamLeases(), [], 'IPAM lease left');
  assert.deepEqual(nets.flatMap((n) => hostVeths(n.bridge)), [], 'host veth left');
  assert.deepEqual(readdirSync(join(config.stateDir, 'netd')).filter((f) => f.endsWith('.json')), [], 'record left');
});
