/**
 * IPv6 on the tap binding through netd's real wiring: a dual-stack conflist (Debian's bridge plugin,
 * host-local with an IPv4 and an IPv6 range) gives the sandbox both families; netd wires the veth,
 * makes the pod bridge the VM's IPv6 router and starts its DHCPv6 server and router
 * advertisements. A stand-in VM (a veth on the sandbox bridge carrying the VM's MAC, in a netns
 * of its own) lets its kernel take the advertisement (on-link prefix, default route via the
 * bridge) and runs a DHCPv6 exchange (SOLICIT/ADVERTISE/REQUEST/REPLY, RENEW, rapid commit) from
 * this test; then the host reaches it on its IPv6 address, it reaches an off-link host address
 * through the bridge, and nothing of the DHCPv6 or the advertisements crossed the CNI veth.
 * Teardown leaves nothing and sets the pod netns's forwarding back. Pod subnets 198.18.232.0/24
 * and a random ULA /64.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.js';
import { silentLogger } from '../../../src/log.js';
import { NetworkManager } from '../../../src/netd/manager.js';
import { netnsNameFor } from '../../../src/network/names.js';
import { linkLocalFromMac } from '../../../src/network/ipv6/address.js';
import { DHCP6_SERVER_PORT, Dhcp6MessageType, Dhcp6Option, decodeAddressList, decodeIaNa, duidLl, encodeIaNa, optionValue } from '../../../src/network/ipv6/dhcp6_packet.js';
import { Ipv6Responder } from '../../../src/network/ipv6/responder.js';
import { bindDhcp6SocketOnBridge, routerAdvertSinkOnBridge } from '../../../src/network/ipv6/sockets.js';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../../../src/errors.js';
import { sandboxParams } from './bridge_network.js';
import { Dhcp6TestClient } from './dhcp6_client.js';
import { StandInVm, quiet, randomUla } from '../../helpers/stand_in_vm.js';

const tag = randomBytes(3).toString('hex');
// A random ULA /48 (RFC 4193), one /64 for the pod and one host address off it.
const ula = randomUla(tag);
const POD6 = `${ula}:1::`;
const GATEWAY6 = `${ula}:1::1`;
const OFF_LINK6 = `${ula}:2::1`;
const SUBNET4 = '198.18.232';
const bridge = `vt6${tag}`;
const vmNs = `vt-${tag}-6vm`;
const vmDev = `vtv${tag}`;
const dir = mkdtempSync(join(tmpdir(), 'vmlet-netd-ipv6-'));

after(() => {
  quiet('ip', ['netns', 'del', vmNs]);
  quiet('ip', ['link', 'del', bridge]);
  rmSync(dir, { recursive: true, force: true });
});

function nftCounter(netns: string, table: string, comment: string): number {
  const listing = JSON.parse(execFileSync('ip', ['netns', 'exec', netns, 'nft', '-j', 'list', 'table', 'bridge', table], { encoding: 'utf8' }));
  for (const item of listing.nftables) {
    if (item.rule?.comment !== comment) continue;
    return item.rule.expr.find((e: { counter?: { packets: number } }) => e.counter)!.counter.packets;
  }
  throw new Error(`no rule ${comment} in ${table}`);
}

test('dual stack: the VM learns its IPv6 address by DHCPv6 and its router from the bridge, is reachable, routes off-link, and nothing leaks or is left', { timeout: 90_000 }, async () => {
  const confDir = join(dir, 'cni');
  const ipamDir = join(dir, 'ipam');
  mkdirSync(confDir);
  const name = `vmlet-ipv6-${tag}`;
  writeFileSync(join(confDir, '10-dual.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name,
    plugins: [{
      type: 'bridge', bridge, isGateway: true, ipMasq: false,
      ipam: {
        type: 'host-local', dataDir: ipamDir,
        ranges: [[{ subnet: `${SUBNET4}.0/24` }], [{ subnet: `${POD6}/64`, gateway: GATEWAY6 }]],
        routes: [{ dst: '198.18.0.0/15' }, { dst: '::/0' }],
      },
    }],
  }));
  const config = loadConfig({ flags: { 'state-dir': join(dir, 'state'), 'cni-conf-dir': confDir, 'log-level': 'silent' } });
  const manager = new NetworkManager(config, silentLogger, () => {});
  await manager.load();
  const p = sandboxParams();
  const sandboxNs = netnsNameFor(p.sandboxId);
  let client: Dhcp6TestClient | undefined;
  await manager.setup(p);
  try {
    const ready = await manager.vmNetwork({ sandboxId: p.sandboxId });
    assert.equal(ready.ready, true, JSON.stringify(ready));
    const iface = ready.ready ? ready.network.interfaces[0]! : assert.fail();
    assert.equal(iface.binding.kind, 'tap');
    const podBridge = iface.binding.kind === 'tap' ? iface.binding.bridge : '';
    const v6 = iface.ips.find((ip) => ip.family === 6);
    assert.ok(v6 && v6.address.startsWith(`${ula}:1:`), `IPv6 address of the VM: ${JSON.stringify(iface.ips)}`);
    assert.ok(iface.ips.some((ip) => ip.family === 4), 'both families');
    assert.equal(execFileSync('ip', ['netns', 'exec', sandboxNs, 'sysctl', '-n', 'net.ipv6.conf.all.forwarding'], { encoding: 'utf8' }).trim(), '1');

    // The stand-in VM: its kernel takes router advertisements as a guest's does.
    const vm = StandInVm.create({ netns: vmNs, dev: vmDev, mac: iface.mac, peer: `vtp${tag}`, sandboxNs, bridge: podBridge });
    // The kernel files the on-link prefix as its own route, with the advertisement's lifetime.
    const routes = await vm.routerAdvertised(20_000, (out) => /default via \S+ .*proto ra/.test(out) && new RegExp(`${POD6}/64 .*expires`).test(out));
    const status = await manager.status({ sandboxId: p.sandboxId });
    const interfaces = status!.interfaces as { bridge?: { mac: string } }[];
    const router = linkLocalFromMac(interfaces[0]!.bridge!.mac);
    assert.match(routes, new RegExp(`default via ${router} dev ${vmDev}`));
    await vm.linkLocalReady(10_000);

    client = Dhcp6TestClient.open(vmNs, vmDev);
    const clientId = duidLl(iface.mac);
    const base = [{ code: Dhcp6Option.CLIENTID, value: clientId }, { code: Dhcp6Option.ORO, value: Buffer.from([0, 23, 0, 24]) }];
    const askIa = { code: Dhcp6Option.IA_NA, value: encodeIaNa({ iaid: 7, t1: 0, t2: 0, addresses: [] }) };
    const advertise = await client.exchange({ type: Dhcp6MessageType.SOLICIT, transactionId: 0x1001, options: [...base, askIa] }, Dhcp6MessageType.ADVERTISE);
    assert.equal(advertise.from, router, 'from the bridge, no zone');
    const serverId = optionValue(advertise.message, Dhcp6Option.SERVERID)!;
    const offered = decodeIaNa(optionValue(advertise.message, Dhcp6Option.IA_NA)!);
    assert.equal(offered.iaid, 7);
    assert.equal(offered.addresses[0]!.address, v6.address);
    const request = await client.exchange({
      type: Dhcp6MessageType.REQUEST, transactionId: 0x1002,
      options: [...base, { code: Dhcp6Option.SERVERID, value: serverId }, { code: Dhcp6Option.IA_NA, value: encodeIaNa(offered) }],
    }, Dhcp6MessageType.REPLY);
    const bound = decodeIaNa(optionValue(request.message, Dhcp6Option.IA_NA)!);
    assert.equal(bound.addresses[0]!.address, v6.address);
    assert.ok(bound.t1 > 0 && bound.t2 > bound.t1);
    const renew = await client.exchange({
      type: Dhcp6MessageType.RENEW, transactionId: 0x1003,
      options: [...base, { code: Dhcp6Option.SERVERID, value: serverId }, { code: Dhcp6Option.IA_NA, value: encodeIaNa(bound) }],
    }, Dhcp6MessageType.REPLY);
    assert.equal(decodeIaNa(optionValue(renew.message, Dhcp6Option.IA_NA)!).addresses[0]!.address, v6.address);
    const rapid = await client.exchange({
      type: Dhcp6MessageType.SOLICIT, transactionId: 0x1004,
      options: [...base, askIa, { code: Dhcp6Option.RAPID_COMMIT, value: Buffer.alloc(0) }],
    }, Dhcp6MessageType.REPLY);
    assert.ok(optionValue(rapid.message, Dhcp6Option.RAPID_COMMIT) !== undefined);
    assert.equal(optionValue(rapid.message, Dhcp6Option.DNS_SERVERS), undefined, 'no IPv6 DNS server was configured');
    assert.deepEqual(decodeAddressList(Buffer.alloc(0)), []);

    // The VM configures its lease as a DHCPv6 client does (a /128; the /64 is on-link by the advertisement).
    execFileSync('ip', ['-n', vmNs, 'address', 'add', `${v6.address}/128`, 'dev', vmDev, 'nodad']);
    // The host (the CNI bridge holds the gateway address) reaches the VM on its IPv6 address.
    execFileSync('busybox', ['ping6', '-c', '1', '-W', '5', v6.address], { stdio: 'ignore', timeout: 10_000 });
    // An off-link address goes through the default route: the bridge forwards it to CNI's gateway.
    execFileSync('ip', ['address', 'add', `${OFF_LINK6}/128`, 'dev', bridge, 'nodad']);
    execFileSync('ip', ['netns', 'exec', vmNs, 'busybox', 'ping6', '-c', '1', '-W', '5', OFF_LINK6], { stdio: 'ignore', timeout: 10_000 });
    // Both families at once: IPv4 still bridged as before.
    execFileSync('ip', ['-n', vmNs, 'address', 'add', `${iface.ips.find((ip) => ip.family === 4)!.address}/24`, 'dev', vmDev]);
    execFileSync('busybox', ['ping', '-c', '1', '-W', '5', iface.ips.find((ip) => ip.family === 4)!.address], { stdio: 'ignore', timeout: 10_000 });

    // Isolation: the advertisements and the multicast SOLICITs were flooded towards the veth and dropped.
    const table = `vmlet-${podBridge}`;
    assert.ok(nftCounter(sandboxNs, table, 'ra-from-local-to-uplink') >= 1, 'router advertisements were not kept from the veth');
    assert.ok(nftCounter(sandboxNs, table, 'dhcp-to-uplink') >= 1, 'the SOLICIT was not kept from the veth');
    const after = await manager.status({ sandboxId: p.sandboxId });
    const stats = (after!.dhcp as { stats: { ipv6: Record<string, { advertises: number; replies: number; routerAdverts: number }> } }).stats.ipv6[podBridge]!;
    // One ADVERTISE (the plain SOLICIT) and REPLYs for the rest; a retransmission under load is answered too.
    assert.ok(stats.advertises >= 1 && stats.replies >= 3, JSON.stringify(stats));
    assert.equal(stats.advertises + stats.replies, client.sent, JSON.stringify(stats));
    assert.ok(stats.routerAdverts >= 1);
  } finally {
    await client?.close();
    quiet('ip', ['netns', 'del', vmNs]);
    await manager.teardown({ sandboxId: p.sandboxId });
    await manager.close();
  }
  assert.equal(existsSync(`/run/netns/${sandboxNs}`), false, 'netns left');
  // host-local keeps one file per leased address (IPv4 dotted, IPv6 with colons) next to its bookkeeping.
  const leases = existsSync(join(ipamDir, name)) ? readdirSync(join(ipamDir, name)).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip')) : [];
  assert.deepEqual(leases, [], 'IPAM lease left');
  assert.deepEqual(readdirSync(join(config.stateDir, 'netd')).filter((f) => f.endsWith('.json')), [], 'netd record left');
});

test('the IPv6 sockets: a missing device or netns is NotFoundError, a bad device name InvalidArgumentError', async () => {
  const ns = `vt-${tag}-6s`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('ip', ['-n', ns, 'link', 'add', 'b0', 'type', 'bridge']);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'b0', 'up']);
    // The source of the advertisements, as the wiring gives the pod bridge.
    execFileSync('ip', ['-n', ns, 'address', 'add', 'fe80::1/64', 'dev', 'b0', 'nodad']);
    await assert.rejects(bindDhcp6SocketOnBridge(`/run/netns/${ns}`, 'vbrnothere'), NotFoundError);
    assert.throws(() => routerAdvertSinkOnBridge(`/run/netns/${ns}`, 'vbrnothere'), NotFoundError);
    await assert.rejects(bindDhcp6SocketOnBridge(`/run/netns/${ns}-gone`, 'lo'), NotFoundError);
    await assert.rejects(bindDhcp6SocketOnBridge(`/run/netns/${ns}`, 'a b'), InvalidArgumentError);
    // On a bridge of that netns: bound (a second server on the port and device is refused), read on a
    // thread of its own; close ends the thread and frees the port and every fd.
    const threads = () => readdirSync('/proc/self/task').length;
    const fds = () => readdirSync('/proc/self/fd').length;
    const [threadsBefore, fdsBefore] = [threads(), fds()];
    const socket = await bindDhcp6SocketOnBridge(`/run/netns/${ns}`, 'b0');
    await assert.rejects(bindDhcp6SocketOnBridge(`/run/netns/${ns}`, 'b0'), FailedPreconditionError);
    socket.receive(() => assert.fail('nothing was sent'), (err) => assert.fail(err));
    assert.throws(() => socket.receive(() => {}, () => {}), FailedPreconditionError);
    assert.equal(threads(), threadsBefore + 1, 'one receive thread');
    await socket.close();
    await socket.close();
    assert.equal(threads(), threadsBefore, 'the receive thread ended');
    assert.equal(fds(), fdsBefore, 'no fd left');
    await assert.rejects(socket.send(Buffer.alloc(4), { address: 'fe80::2', port: 546, ifindex: 0 }), FailedPreconditionError);
    // Made and closed without ever being read: the fd is closed too.
    await (await bindDhcp6SocketOnBridge(`/run/netns/${ns}`, 'b0')).close();
    assert.equal(fds(), fdsBefore, 'no fd left');
    assert.equal(DHCP6_SERVER_PORT, 547);
    const sink = routerAdvertSinkOnBridge(`/run/netns/${ns}`, 'b0');
    await sink.close();
    await assert.rejects(sink.send(Buffer.alloc(16)), FailedPreconditionError);
  } finally {
    quiet('ip', ['netns', 'del', ns]);
  }
});

test('DHCPv6 on a pod bridge whose ifindex names no device of the host namespace: answered, and the reply scoped to the bridge', { timeout: 60_000 }, async () => {
  const podNs = `vt-${tag}-6z`;
  const clientNs = `vt-${tag}-6c`;
  // An index no host device has: Node's dgram would fail to name the SOLICIT's zone (ENXIO).
  const hostIndexes = new Set(execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).split('\n').filter(Boolean).map((l) => Number(l.split(':')[0])));
  let index = randomInt(100_000, 1_000_000);
  while (hostIndexes.has(index)) index += 1;
  const clientMac = '02:00:00:6c:00:02';
  let client: Dhcp6TestClient | undefined;
  let responder: Ipv6Responder | undefined;
  execFileSync('ip', ['netns', 'add', podNs]);
  try {
    execFileSync('ip', ['-n', podNs, 'link', 'add', 'name', 'b0', 'index', String(index), 'type', 'bridge']);
    // As the wiring makes a pod bridge: no address of the kernel's own, one explicit link-local address.
    execFileSync('ip', ['-n', podNs, 'link', 'set', 'b0', 'addrgenmode', 'none']);
    execFileSync('ip', ['-n', podNs, 'address', 'add', 'fe80::1/64', 'dev', 'b0', 'nodad']);
    const stand = StandInVm.create({ netns: clientNs, dev: 'c0', mac: clientMac, peer: 'p0', sandboxNs: podNs, bridge: 'b0' });
    execFileSync('ip', ['-n', podNs, 'link', 'set', 'b0', 'up']);
    assert.match(execFileSync('ip', ['-n', podNs, '-o', 'link', 'show', 'b0'], { encoding: 'utf8' }), new RegExp(`^${index}: b0:`));
    await stand.linkLocalReady(10_000);
    const lease = { address: `${POD6}42`, prefixLength: 64, dns: [], search: [], leaseSeconds: 600 };
    const serverDuid = duidLl('02:00:00:6c:00:01');
    const advert = { curHopLimit: 64, managed: true, other: true, routerLifetime: 0, reachableTime: 0, retransTimer: 0, prefixes: [], routes: [] };
    responder = new Ipv6Responder(await bindDhcp6SocketOnBridge(`/run/netns/${podNs}`, 'b0'), routerAdvertSinkOnBridge(`/run/netns/${podNs}`, 'b0'), { lease, serverDuid, advert });
    client = Dhcp6TestClient.open(clientNs, 'c0');
    const base = [{ code: Dhcp6Option.CLIENTID, value: duidLl(clientMac) }];
    const solicit = { type: Dhcp6MessageType.SOLICIT, transactionId: 0x3001, options: [...base, { code: Dhcp6Option.IA_NA, value: encodeIaNa({ iaid: 3, t1: 0, t2: 0, addresses: [] }) }] };
    const advertise = await client.exchange(solicit, Dhcp6MessageType.ADVERTISE);
    assert.equal(advertise.from, 'fe80::1', 'from the bridge link-local address, no zone');
    assert.equal(advertise.ifindex, client.ifindex, 'arrived on the client device');
    const offered = decodeIaNa(optionValue(advertise.message, Dhcp6Option.IA_NA)!);
    assert.equal(offered.addresses[0]!.address, lease.address);
    const reply = await client.exchange({
      type: Dhcp6MessageType.REQUEST, transactionId: 0x3002,
      options: [...base, { code: Dhcp6Option.SERVERID, value: serverDuid }, { code: Dhcp6Option.IA_NA, value: encodeIaNa(offered) }],
    }, Dhcp6MessageType.REPLY);
    assert.equal(decodeIaNa(optionValue(reply.message, Dhcp6Option.IA_NA)!).addresses[0]!.address, lease.address);
    const stats = responder.stats();
    assert.equal(stats.advertises + stats.replies, client.sent, JSON.stringify(stats));
    assert.equal(stats.sendErrors, 0);
  } finally {
    await client?.close();
    await responder?.close();
    quiet('ip', ['netns', 'del', clientNs]);
    quiet('ip', ['netns', 'del', podNs]);
  }
});
