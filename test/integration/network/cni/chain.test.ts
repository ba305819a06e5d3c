/**
 * CniChain with real plugins (Debian's and the suite's multinic) in real network namespaces.
 * Every test removes its netns, bridge and temp dirs even when it fails, and asserts that after
 * DEL no lease, link, cache file or portmap rule of its own is left.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Code } from '../../../../src/errors.js';
import { AttachmentCache } from '../../../../src/network/cni/cache.js';
import { CniChain, type AttachmentRequest } from '../../../../src/network/cni/chain.js';
import { loadNetworkConfig, parseConfigList, type NetworkConfigList } from '../../../../src/network/cni/config.js';
import { CniPluginError } from '../../../../src/network/cni/errors.js';
import { ExecPluginRunner } from '../../../../src/network/cni/exec.js';
import { toVmNetworkView } from '../../../../src/network/cni/result.js';
import {
  BIN_DIRS,
  addresses,
  deleteEmptyTables,
  nftTables,
  createNetns,
  deleteLinkAfter,
  deleteNetns,
  leaseFiles,
  link,
  median,
  natRules,
  netnsNames,
  removePortmapScaffolding,
  routes,
  run,
  skipReason,
  tempDir,
  testSubnet,
  uid,
} from './helpers.js';

const skip = skipReason();

function list(doc: Record<string, unknown>): NetworkConfigList {
  const r = parseConfigList(doc);
  if (!r.ok) throw new Error(r.reason);
  return r.config;
}

async function setup(t: TestContext, label: string) {
  const dir = await tempDir(t, label);
  const cache = new AttachmentCache(join(dir, 'cache'));
  const runner = new ExecPluginRunner({ binDirs: BIN_DIRS, timeoutMs: 20_000 });
  const chain = new CniChain({ runner, cache });
  return { dir, cache, runner, chain, dataDir: join(dir, 'ipam') };
}

function bridgePlugin(bridge: string, subnet: string, dataDir: string): Record<string, unknown> {
  return {
    type: 'bridge',
    bridge,
    isGateway: true,
    ipMasq: false,
    ipam: { type: 'host-local', subnet, dataDir, routes: [{ dst: '0.0.0.0/0' }] },
  };
}

function request(netnsPath: string, label: string): AttachmentRequest {
  const id = `${label}-${uid(6)}`;
  return {
    containerId: id,
    netns: netnsPath,
    ifName: 'eth0',
    pod: { namespace: 'vmlet-test', name: label, infraContainerId: id, uid: `uid-${uid(8)}` },
  };
}

async function cacheFiles(dir: string): Promise<string[]> {
  return readdir(join(dir, 'cache')).catch(() => []);
}

test('bridge + host-local: ADD, CHECK, DEL leave nothing behind (config from a conf dir)', { skip }, async (t) => {
  const { dir, chain, dataDir } = await setup(t, 'bridge');
  const ns = await createNetns(t, 'cni-bridge');
  const bridge = `vmlbr${uid()}`;
  deleteLinkAfter(t, bridge);
  const { subnet, prefix } = testSubnet();
  const name = `vmlet-test-bridge-${uid()}`;

  // The conf dir also holds configs the loader must refuse: they sort first and are skipped.
  const confDir = await tempDir(t, 'conf');
  await writeFile(join(confDir, '00-old.conf'), JSON.stringify({ cniVersion: '0.2.0', name: 'old', type: 'bridge' }));
  await writeFile(join(confDir, '05-noversion.conflist'), JSON.stringify({ name: 'nov', plugins: [{ type: 'bridge' }] }));
  await writeFile(join(confDir, '10-bridge.conflist'), JSON.stringify({ cniVersion: '1.0.0', name, plugins: [bridgePlugin(bridge, subnet, dataDir)] }));
  const loaded = await loadNetworkConfig(confDir);
  assert.ok(loaded.ok, loaded.ok ? '' : loaded.reason);
  assert.equal(loaded.file, join(confDir, '10-bridge.conflist'));
  assert.deepEqual(loaded.skipped.map((s) => s.reason), ['cniVersion "0.2.0" is older than 0.3.0, the oldest vmlet supports', 'missing cniVersion']);
  const config = loaded.config;

  const req = request(ns.path, 'bridge');
  const { result, raw } = await chain.add(config, req);
  const view = toVmNetworkView(result, { ifName: 'eth0' });
  assert.equal(view.interfaces.length, 1);
  const eth0 = view.interfaces[0]!;
  assert.equal(eth0.name, 'eth0');
  assert.equal(eth0.sandbox, ns.path);
  const podIp = eth0.ips[0]!;
  assert.ok(podIp.address.startsWith(prefix), podIp.address);
  assert.equal(podIp.gateway, `${prefix}1`);
  assert.deepEqual(eth0.routes, [{ destination: '0.0.0.0/0', gateway: `${prefix}1` }]);

  // What the result says is what the kernel has.
  assert.equal((await link('eth0', ns.name))?.address, eth0.mac);
  assert.deepEqual(await addresses('eth0', ns.name), [`${podIp.address}/24`]);
  assert.ok((await routes(ns.name)).some((r) => r.dst === 'default' && r.gateway === `${prefix}1`));
  assert.deepEqual(await addresses(bridge), [`${prefix}1/24`], 'isGateway puts the gateway on the bridge');
  const hostVeth = result.interfaces.find((i) => i.sandbox === undefined && i.name !== bridge)!.name;
  assert.ok(await link(hostVeth), 'host veth exists');
  assert.deepEqual(await leaseFiles(dataDir, name), [podIp.address]);
  assert.equal((await cacheFiles(dir)).length, 1);
  assert.equal((raw as { cniVersion: string }).cniVersion, '1.0.0');

  await chain.check(config, req);

  await chain.del(config.name, req);
  assert.deepEqual(await leaseFiles(dataDir, name), [], 'lease released');
  assert.equal(await link(hostVeth), undefined, 'host veth gone');
  assert.equal(await link('eth0', ns.name), undefined, 'pod interface gone');
  assert.deepEqual(await cacheFiles(dir), [], 'cache record removed');

  // A repeated DEL of what is already gone succeeds.
  await chain.del(config.name, req, config);
  assert.deepEqual(await leaseFiles(dataDir, name), []);
});

test('bridge + host-local ADD/DEL timings', { skip }, async (t) => {
  const { dir, chain, dataDir } = await setup(t, 'timing');
  const bridge = `vmlbr${uid()}`;
  deleteLinkAfter(t, bridge);
  const { subnet } = testSubnet();
  const config = list({ cniVersion: '1.0.0', name: `vmlet-test-timing-${uid()}`, plugins: [bridgePlugin(bridge, subnet, dataDir)] });
  const adds: number[] = [];
  const dels: number[] = [];
  for (let i = 0; i < 7; i++) {
    const ns = await createNetns(t, 'cni-timing');
    const req = request(ns.path, 'timing');
    let started = performance.now();
    await chain.add(config, req);
    adds.push(performance.now() - started);
    started = performance.now();
    await chain.del(config.name, req);
    dels.push(performance.now() - started);
    await deleteNetns(ns.name);
  }
  t.diagnostic(`bridge+host-local ADD ms: ${adds.map((v) => v.toFixed(1)).join(' ')} (median ${median(adds).toFixed(1)})`);
  t.diagnostic(`bridge+host-local DEL ms: ${dels.map((v) => v.toFixed(1)).join(' ')} (median ${median(dels).toFixed(1)})`);
  assert.deepEqual(await leaseFiles(dataDir, config.name), []);
  assert.deepEqual(await cacheFiles(dir), []);
});

test('ptp + host-local (spec 0.4.0): ADD, CHECK, DEL', { skip }, async (t) => {
  const { dir, chain, dataDir } = await setup(t, 'ptp');
  const ns = await createNetns(t, 'cni-ptp');
  const { subnet, prefix } = testSubnet();
  const config = list({
    cniVersion: '0.4.0',
    name: `vmlet-test-ptp-${uid()}`,
    plugins: [{ type: 'ptp', ipMasq: false, ipam: { type: 'host-local', subnet, dataDir, routes: [{ dst: '0.0.0.0/0' }] } }],
  });
  const req = request(ns.path, 'ptp');
  const { result } = await chain.add(config, req);
  assert.equal(result.cniVersion, '0.4.0');
  const view = toVmNetworkView(result, { ifName: 'eth0' });
  const podIp = view.interfaces[0]!.ips[0]!;
  assert.ok(podIp.address.startsWith(prefix));
  const hostVeth = result.interfaces.find((i) => i.sandbox === undefined)!.name;
  assert.ok(await link(hostVeth));
  assert.ok((await routes()).some((r) => r.dst === podIp.address && r.dev === hostVeth), 'host route to the pod');
  await chain.check(config, req);
  await chain.del(config.name, req);
  assert.equal(await link(hostVeth), undefined);
  assert.ok(!(await routes()).some((r) => r.dst === podIp.address), 'host route gone');
  assert.deepEqual(await leaseFiles(dataDir, config.name), []);
  assert.deepEqual(await cacheFiles(dir), []);
});

test('chained bridge + tuning + portmap with a port mapping from runtimeConfig', { skip }, async (t) => {
  const { dir, chain, dataDir } = await setup(t, 'chain');
  const ns = await createNetns(t, 'cni-chain');
  const bridge = `vmlbr${uid()}`;
  deleteLinkAfter(t, bridge);
  const { subnet } = testSubnet();
  const hostPort = 20000 + Math.floor(Math.random() * 20000);
  const before = await natRules();
  const tablesBefore = await nftTables();
  const scaffoldingExisted = before.some((l) => l.startsWith('-N CNI-HOSTPORT-DNAT'));
  const cleanUpNat = async () => {
    if (!scaffoldingExisted) await removePortmapScaffolding();
    await deleteEmptyTables((await nftTables()).filter((tb) => !tablesBefore.includes(tb)));
  };
  t.after(cleanUpNat);
  const config = list({
    cniVersion: '1.0.0',
    name: `vmlet-test-chain-${uid()}`,
    plugins: [
      bridgePlugin(bridge, subnet, dataDir),
      { type: 'tuning', mtu: 1400, sysctl: { 'net.ipv4.conf.eth0.arp_ignore': '1' } },
      { type: 'portmap', snat: true, capabilities: { portMappings: true } },
    ],
  });
  const req: AttachmentRequest = {
    ...request(ns.path, 'chain'),
    capabilityArgs: { portMappings: [{ hostPort, containerPort: 80, protocol: 'tcp' }], bandwidth: { ingressRate: 1 } },
  };
  const { result } = await chain.add(config, req);
  const podIp = toVmNetworkView(result, { ifName: 'eth0' }).interfaces[0]!.ips[0]!.address;
  assert.equal((await link('eth0', ns.name))?.mtu, 1400, 'tuning set the MTU');
  const dnatChains = (await natRules()).filter((l) => l.startsWith('-N CNI-DN-'));
  const ours = (await natRules()).filter((l) => l.includes(`--dport ${hostPort}`));
  assert.ok(ours.some((l) => l.includes(`--to-destination ${podIp}:80`)), `portmap DNAT rule for ${hostPort}: ${ours.join(' | ')}`);
  assert.ok(dnatChains.length > 0);

  await chain.del(config.name, req);
  const after = await natRules();
  assert.deepEqual(after.filter((l) => l.includes(`--dport ${hostPort}`) || l.includes(podIp)), [], 'no rule for our port or pod left');
  const newChains = after.filter((l) => l.startsWith('-N CNI-DN-') && !before.includes(l));
  assert.deepEqual(newChains, [], 'no per-pod portmap chain left');
  assert.deepEqual(await leaseFiles(dataDir, config.name), []);
  assert.deepEqual(await cacheFiles(dir), []);
  // portmap keeps its shared chains after the last DEL; this test removes what its run created.
  await cleanUpNat();
  if (!scaffoldingExisted) {
    assert.deepEqual((await natRules()).filter((l) => l.includes('CNI-')), [], 'no portmap rule or chain left at all');
  }
  assert.deepEqual(await nftTables(), tablesBefore, 'no nftables table left behind');
});

test('multinic test plugin (spec 1.1.0): two sandbox interfaces with their IPs', { skip }, async (t) => {
  const { dir, chain } = await setup(t, 'multinic');
  const ns = await createNetns(t, 'cni-multinic');
  const a = testSubnet().prefix;
  const b = testSubnet().prefix;
  const config = list({
    cniVersion: '1.1.0',
    name: `vmlet-test-multinic-${uid()}`,
    plugins: [
      {
        type: 'multinic',
        addresses: [{ address: `${a}2/24`, gateway: `${a}1` }, { address: `${b}2/24` }],
        routes: [{ dst: '0.0.0.0/0', gw: `${a}1` }],
        dns: { nameservers: [`${a}53`], search: ['svc.cluster.local'] },
      },
    ],
  });
  const req = request(ns.path, 'multinic');
  const { result } = await chain.add(config, req);
  assert.equal(result.cniVersion, '1.1.0');
  const view = toVmNetworkView(result, { ifName: 'eth0' });
  assert.deepEqual(
    view.interfaces.map((i) => ({ name: i.name, ips: i.ips.map((ip) => `${ip.address}/${ip.prefixLength}`), routes: i.routes })),
    [
      { name: 'eth0', ips: [`${a}2/24`], routes: [{ destination: '0.0.0.0/0', gateway: `${a}1` }] },
      { name: 'net1', ips: [`${b}2/24`], routes: [] },
    ],
  );
  assert.deepEqual(view.dns.nameservers, [`${a}53`]);
  for (const iface of view.interfaces) {
    assert.equal((await link(iface.name, ns.name))?.address, iface.mac, `${iface.name} MAC as reported`);
  }
  const hostEnds = result.interfaces.filter((i) => i.sandbox === undefined).map((i) => i.name);
  assert.equal(hostEnds.length, 2);
  for (const h of hostEnds) deleteLinkAfter(t, h);
  for (const h of hostEnds) assert.ok(await link(h), `${h} exists`);
  await chain.check(config, req);

  await chain.del(config.name, req);
  for (const h of hostEnds) assert.equal(await link(h), undefined, `${h} gone`);
  assert.equal(await link('eth0', ns.name), undefined);
  assert.equal(await link('net1', ns.name), undefined);
  assert.deepEqual(await cacheFiles(dir), []);
});

test('a failing plugin in the chain rolls the whole list back and keeps the plugin\'s message', { skip }, async (t) => {
  const { dir, chain, dataDir } = await setup(t, 'rollback');
  const ns = await createNetns(t, 'cni-rollback');
  const bridge = `vmlbr${uid()}`;
  deleteLinkAfter(t, bridge);
  const { subnet } = testSubnet();
  const config = list({
    cniVersion: '1.0.0',
    name: `vmlet-test-rollback-${uid()}`,
    plugins: [bridgePlugin(bridge, subnet, dataDir), { type: 'multinic', passthrough: true, failOn: 'ADD' }],
  });
  const req = request(ns.path, 'rollback');
  await assert.rejects(chain.add(config, req), (err: unknown) => {
    assert.ok(err instanceof CniPluginError, String(err));
    assert.equal(err.plugin, 'multinic');
    assert.equal(err.code, Code.UNAVAILABLE);
    assert.match(err.message, /multinic refuses ADD as told/);
    return true;
  });
  assert.deepEqual(await leaseFiles(dataDir, config.name), [], 'bridge DEL released the lease');
  assert.equal(await link('eth0', ns.name), undefined, 'bridge DEL removed the pod interface');
  const veths = JSON.parse(await run('ip', ['-j', 'link', 'show', 'master', bridge])) as unknown[];
  assert.deepEqual(veths, [], 'no veth left on the bridge');
  assert.deepEqual(await cacheFiles(dir), []);
});

test('DEL after a restart, from the cache alone, with the netns already deleted', { skip }, async (t) => {
  const { dir, chain, dataDir, cache } = await setup(t, 'restart');
  const ns = await createNetns(t, 'cni-restart');
  const bridge = `vmlbr${uid()}`;
  deleteLinkAfter(t, bridge);
  const { subnet } = testSubnet();
  const config = list({ cniVersion: '1.0.0', name: `vmlet-test-restart-${uid()}`, plugins: [bridgePlugin(bridge, subnet, dataDir)] });
  const req = request(ns.path, 'restart');
  const { result } = await chain.add(config, req);
  const hostVeth = result.interfaces.find((i) => i.sandbox === undefined && i.name !== bridge)!.name;
  assert.equal((await leaseFiles(dataDir, config.name)).length, 1);
  await deleteNetns(ns.name);

  // A new runner and chain, as after a vmlet restart; only the network name is known.
  const fresh = new CniChain({ runner: new ExecPluginRunner({ binDirs: BIN_DIRS }), cache });
  await fresh.del(config.name, { containerId: req.containerId, ifName: req.ifName, netns: ns.path });
  assert.deepEqual(await leaseFiles(dataDir, config.name), [], 'lease released without the netns');
  // The kernel removes the host end of a veth whose netns went in its deferred netns cleanup.
  for (let i = 0; i < 100 && (await link(hostVeth)) !== undefined; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(await link(hostVeth), undefined);
  assert.deepEqual(await cacheFiles(dir), []);
  await fresh.del(config.name, { containerId: req.containerId, ifName: req.ifName, netns: ns.path }, config);
});

test('nothing of this suite is left: no vmlet-test-cni netns, no vmlbr bridges', { skip }, async () => {
  assert.deepEqual((await netnsNames()).filter((n) => n.startsWith('vmlet-test-cni-')), []);
  const links = JSON.parse(await run('ip', ['-j', 'link', 'show'])) as { ifname: string }[];
  assert.deepEqual(links.map((l) => l.ifname).filter((n) => n.startsWith('vmlbr') || n.startsWith('vmlt')), []);
});
