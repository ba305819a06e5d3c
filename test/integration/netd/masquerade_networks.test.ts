/**
 * The masquerade binding per interface and with IPv6, through netd with Debian's real plugins and
 * no VM: the pod's default network (eth0, 198.19.54.0/25) stays bridged, a second network
 * (net1: 198.19.54.128/25 and a random ULA /64) is masqueraded because its Multus JSON element
 * asks for it (`vmlet.io/network-binding: masquerade`). A stand-in VM (a veth on net1's
 * masquerade bridge carrying the VM's MAC, in a netns of its own) takes the bridge's router
 * advertisement with its kernel, asks for its internal IPv6 address by DHCPv6 (the masquerade
 * bridge's ifindex in the pod netns usually names no host device: the responder must not look it
 * up there), configures the planned addresses and routes, and runs a TCP responder; then:
 * - the host reaches the responder through net1's pod IPv4 and IPv6 addresses (DNAT, NAT66);
 * - the stand-in reaches a responder on the host over both families, which sees net1's pod
 *   addresses as the source (SNAT);
 * - teardown leaves no netns, IPAM lease or record.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { Socket, createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.js';
import { silentLogger } from '../../../src/log.js';
import { NetworkManager } from '../../../src/netd/manager.js';
import { netnsNameFor } from '../../../src/network/names.js';
import { Dhcp6MessageType, Dhcp6Option, decodeIaNa, duidLl, encodeIaNa, optionValue } from '../../../src/network/ipv6/dhcp6_packet.js';
import { ownerIdFor } from '../../../src/store/owner.js';
import { sandboxParams } from './bridge_network.js';
import { Dhcp6TestClient } from './dhcp6_client.js';
import { StandInVm, quiet, randomUla } from '../../helpers/stand_in_vm.js';

const tag = randomBytes(3).toString('hex');
const ula = randomUla(tag);
const POD6 = `${ula}:1::`;
const GATEWAY6 = `${ula}:1::1`;
const GATEWAY4 = '198.19.54.129';
const dir = mkdtempSync(join(tmpdir(), 'vmlet-netd-masq-'));
const confDir = join(dir, 'cni');
const ipamDir = join(dir, 'ipam');
const vmNs = `vt-${tag}-mvm`;
const vmDev = `vmv${tag}`;
const nets = [
  {
    name: `vt-mmain-${tag}`, bridge: `vmm${tag}`, file: '10-main.conflist',
    ranges: [[{ subnet: '198.19.54.0/25' }]], routes: [{ dst: '0.0.0.0/0' }],
  },
  {
    name: `vt-mside-${tag}`, bridge: `vms${tag}`, file: '20-side.conflist',
    ranges: [[{ subnet: '198.19.54.128/25', gateway: GATEWAY4 }], [{ subnet: `${POD6}/64`, gateway: GATEWAY6 }]],
    // A secondary network's own routes (its default routes are the default network's business),
    // with their gateway written out: the bridge plugin's CHECK (Debian's 1.1.1) looks for a route without
    // one literally and fails on a pristine ADD otherwise.
    routes: [{ dst: '198.18.0.0/15', gw: GATEWAY4 }, { dst: `${ula}::/48`, gw: GATEWAY6 }],
  },
];
mkdirSync(confDir);
for (const n of nets) {
  writeFileSync(join(confDir, n.file), JSON.stringify({
    cniVersion: '1.0.0',
    name: n.name,
    plugins: [{ type: 'bridge', bridge: n.bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: ipamDir, ranges: n.ranges, routes: n.routes } }],
  }));
}
const children: ChildProcess[] = [];

function hostHasIndex(index: number): boolean {
  return execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).split('\n').some((l) => l.startsWith(`${index}:`));
}

after(() => {
  for (const child of children) if (child.exitCode === null) child.kill();
  quiet('ip', ['netns', 'del', vmNs]);
  for (const n of nets) quiet('ip', ['link', 'del', n.bridge]);
  rmSync(dir, { recursive: true, force: true });
});

/** Node in the stand-in VM's netns running `script`; resolves with its first line of output. */
async function inVm(script: string): Promise<{ child: ChildProcess; firstLine: Promise<string> }> {
  const child = spawn('ip', ['netns', 'exec', vmNs, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const firstLine = new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    child.on('exit', (code) => reject(new Error(`node in ${vmNs} exited with ${code} before a line: ${JSON.stringify(out)}`)));
  });
  return { child, firstLine };
}

/** A TCP client from the host: the first line `host:port` answers. */
function callFromHost(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    let out = '';
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no answer from ${host}:${port}`)));
    socket.on('data', (d: Buffer) => (out += d.toString()));
    socket.on('end', () => resolve(out.trim()));
    socket.on('error', reject);
    socket.connect(port, host);
  });
}

test('masquerade per interface (Multus JSON element) with IPv6: router advertisements, reachable through the pod IPs both ways, nothing left', { timeout: 120_000 }, async (t) => {
  const config = loadConfig({ flags: { 'state-dir': join(dir, 'state'), 'cni-conf-dir': confDir, 'log-level': 'silent' } });
  const manager = new NetworkManager(config, silentLogger, () => {});
  await manager.load();
  const p = { ...sandboxParams(), annotations: { 'k8s.v1.cni.cncf.io/networks': JSON.stringify([{ name: nets[1]!.name, 'vmlet.io/network-binding': 'masquerade' }]) } };
  const sandboxNs = netnsNameFor(p.sandboxId);
  let dhcp6: Dhcp6TestClient | undefined;
  let hostServer: Server | undefined;
  await manager.setup(p);
  try {
    const ready = await manager.vmNetwork({ sandboxId: p.sandboxId });
    assert.equal(ready.ready, true, JSON.stringify(ready));
    const [eth0, net1] = ready.ready ? ready.network.interfaces : assert.fail();
    const status = await manager.status({ sandboxId: p.sandboxId });
    assert.deepEqual(status!.interfaces.map((i) => i.kind), ['tap', 'masquerade'], 'eth0 bridged, net1 masqueraded');
    const masq = status!.interfaces[1] as { uplink: { podAddress: string }; ipv6: { podAddress: string }; bridge: { name: string }; table: string };
    const pod4 = masq.uplink.podAddress;
    const pod6 = masq.ipv6.podAddress;

    await t.test("CNI CHECK with the real bridge plugin: the masqueraded net1 passes, the bridged eth0 (the VM holds its addresses) is skipped with why", async () => {
      const checked = await manager.status({ sandboxId: p.sandboxId, check: true });
      const report = checked!.cniCheck!;
      const byIf = Object.fromEntries(report.networks.map((n) => [n.ifName, n]));
      assert.equal(byIf.net1?.result, 'ok', JSON.stringify(byIf.net1));
      assert.equal(byIf.eth0?.result, 'skipped', JSON.stringify(byIf.eth0));
      assert.match(byIf.eth0!.reason ?? '', /tap binding/);
      assert.equal(report.ok, true);
    });

    await t.test('the plan: eth0 keeps its pod address, net1 gets the second blocks and no default route; both NAT tables', () => {
      assert.match(pod4, /^198\.19\.54\.(1[3-9]\d|2\d\d)$/);
      assert.ok(pod6.startsWith(`${ula}:1:`), pod6);
      assert.ok(eth0!.ips.every((ip) => ip.address.startsWith('198.19.54.')), 'eth0 keeps the pod address (tap binding)');
      assert.deepEqual(net1!.ips, [{ family: 4, address: '10.0.3.2', prefixLength: 24 }, { family: 6, address: 'fd10:0:2::102', prefixLength: 120 }]);
      assert.deepEqual(net1!.routes, [{ destination: '198.18.0.0/15', gateway: '10.0.3.1' }, { destination: `${ula}::/48`, gateway: 'fd10:0:2::101' }]);
      const tables = execFileSync('ip', ['netns', 'exec', sandboxNs, 'nft', 'list', 'tables'], { encoding: 'utf8' });
      assert.match(tables, new RegExp(`^table ip ${masq.table}$`, 'm'));
      assert.match(tables, new RegExp(`^table ip6 ${masq.table}$`, 'm'));
      assert.ok(masq.table.startsWith(`vmlet-${ownerIdFor(config.stateDir).slice(0, 8)}-masq-`));
      assert.equal(execFileSync('ip', ['netns', 'exec', sandboxNs, 'sysctl', '-n', 'net.ipv6.conf.all.forwarding'], { encoding: 'utf8' }).trim(), '1');
    });

    // The stand-in VM on net1's masquerade bridge.
    const vm = StandInVm.create({ netns: vmNs, dev: vmDev, mac: net1!.mac, peer: `vmp${tag}`, sandboxNs, bridge: masq.bridge.name });

    await t.test("the stand-in's kernel takes the bridge's router advertisement: the internal prefix on-link, no default router (a secondary network)", async () => {
      const routes = await vm.routerAdvertised(25_000, (out) => /^fd10:0:2::100\/120 dev \S+ proto (ra|kernel) .*expires/m.test(out));
      assert.doesNotMatch(routes, /^default/m);
      await vm.linkLocalReady(10_000);
    });

    await t.test('DHCPv6 gives the stand-in its internal address', async () => {
      const bridgeIndex = Number(execFileSync('ip', ['-n', sandboxNs, '-o', 'link', 'show', 'dev', masq.bridge.name], { encoding: 'utf8' }).split(':')[0]);
      t.diagnostic(`masquerade bridge ifindex ${bridgeIndex} in the pod netns; a host device with that index: ${hostHasIndex(bridgeIndex)}`);
      dhcp6 = Dhcp6TestClient.open(vmNs, vmDev);
      const base = [{ code: Dhcp6Option.CLIENTID, value: duidLl(net1!.mac) }];
      const solicit = { type: Dhcp6MessageType.SOLICIT, transactionId: 0x2001, options: [...base, { code: Dhcp6Option.IA_NA, value: encodeIaNa({ iaid: 1, t1: 0, t2: 0, addresses: [] }) }] };
      const advertise = (await dhcp6.exchange(solicit, Dhcp6MessageType.ADVERTISE)).message;
      const offered = decodeIaNa(optionValue(advertise, Dhcp6Option.IA_NA)!);
      assert.equal(offered.addresses[0]?.address, 'fd10:0:2::102');
      const reply = (await dhcp6.exchange({
        type: Dhcp6MessageType.REQUEST, transactionId: 0x2002,
        options: [...base, { code: Dhcp6Option.SERVERID, value: optionValue(advertise, Dhcp6Option.SERVERID)! }, { code: Dhcp6Option.IA_NA, value: encodeIaNa(offered) }],
      }, Dhcp6MessageType.REPLY)).message;
      assert.equal(decodeIaNa(optionValue(reply, Dhcp6Option.IA_NA)!).addresses[0]?.address, 'fd10:0:2::102');
      const stats = ((await manager.status({ sandboxId: p.sandboxId }))!.dhcp as { stats: { ipv6: Record<string, { advertises: number; replies: number; sendErrors: number }> } }).stats.ipv6[masq.bridge.name]!;
      assert.equal(stats.advertises + stats.replies, dhcp6.sent, JSON.stringify(stats));
      assert.equal(stats.sendErrors, 0);
    });

    // The stand-in configures what the plan gives it (as the static network-config does): addresses and routes.
    execFileSync('ip', ['-n', vmNs, 'address', 'add', '10.0.3.2/24', 'dev', vmDev]);
    execFileSync('ip', ['-n', vmNs, 'address', 'add', 'fd10:0:2::102/120', 'dev', vmDev, 'nodad']);
    for (const r of net1!.routes) execFileSync('ip', ['-n', vmNs, 'route', 'add', r.destination, 'via', r.gateway!, 'dev', vmDev]);

    await t.test("the host reaches the stand-in's responder through net1's pod addresses (every port: none declared)", async () => {
      const responder = await inVm(`const s=require('net').createServer((c)=>c.end('seen '+c.remoteAddress+'\\n'));s.listen(8080,'::',()=>console.log('listening'))`);
      assert.equal(await responder.firstLine, 'listening');
      assert.equal(await callFromHost(pod4, 8080), `seen ::ffff:${GATEWAY4}`, 'IPv4: DNAT only, the host address stays the source');
      assert.equal(await callFromHost(pod6, 8080), `seen ${GATEWAY6}`, 'IPv6: NAT66 DNAT');
    });

    await t.test("the stand-in reaches the host, which sees net1's pod addresses as the source", async () => {
      hostServer = createServer((c) => c.end(`seen ${c.remoteAddress}\n`));
      await new Promise<void>((resolve) => hostServer!.listen(0, '::', () => resolve()));
      const port = (hostServer.address() as AddressInfo).port;
      for (const [target, expected] of [[GATEWAY4, `seen ::ffff:${pod4}`], [GATEWAY6, `seen ${pod6}`]] as const) {
        const client = await inVm(`const c=require('net').connect(${port},'${target}');let o='';c.on('data',(d)=>o+=d);c.on('end',()=>console.log(o.trim()));c.on('error',(e)=>console.log('error '+e.message))`);
        assert.equal(await client.firstLine, expected, `outbound to ${target}`);
      }
    });
  } finally {
    await dhcp6?.close();
    hostServer?.close();
    for (const child of children) if (child.exitCode === null) child.kill();
    quiet('ip', ['netns', 'del', vmNs]);
    await manager.teardown({ sandboxId: p.sandboxId });
    await manager.close();
  }
  assert.equal(existsSync(`/run/netns/${sandboxNs}`), false, 'netns left');
  const leases = nets.flatMap((n) => (existsSync(join(ipamDir, n.name)) ? readdirSync(join(ipamDir, n.name)).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip')) : []));
  assert.deepEqual(leases, [], 'IPAM lease left');
  assert.deepEqual(readdirSync(join(config.stateDir, 'netd')).filter((f) => f.endsWith('.json')), [], 'netd record left');
});
