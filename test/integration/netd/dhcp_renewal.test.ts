/**
 * DHCPv4 renewal at T1 through netd's real wiring: Debian's bridge plugin (host-local IPAM) gives
 * the sandbox its veth, netd wires it (bridge, TAP, isolation table) and starts its DHCP responder
 * with a short lease; a stand-in VM (a veth on the sandbox bridge carrying the VM's MAC, in a
 * netns of its own, in the TAP's place and under its name) runs busybox udhcpc, which renews by
 * unicast to the server id at T1. The renewal must be answered before T2 (no broadcast rebinding), through the bridge's redirect to
 * the server address, while the CNI side still gets no DHCP. Pod subnet 198.18.150.0/24.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { silentLogger } from '../../../src/log.js';
import { NetworkManager } from '../../../src/netd/manager.js';
import { startDhcpServerInNetns } from '../../../src/netd/dhcp_responders.js';
import { netnsNameFor } from '../../../src/network/names.js';
import { bridgeNetwork, sandboxParams } from './bridge_network.js';

// busybox udhcpc renews no earlier than 15 s into a lease, whatever the lease says: T1 must lie past that.
const LEASE_SECONDS = 40;
const T1 = LEASE_SECONDS * 0.5;
const T2 = LEASE_SECONDS * 0.875;
const tag = randomBytes(3).toString('hex');
const network = bridgeNetwork('renew', '198.18.150.0/24');
const vmNs = `vt-${tag}-rvm`;
const children = new Set<ChildProcess>();

after(() => {
  for (const child of children) child.kill('SIGKILL');
  try {
    execFileSync('ip', ['netns', 'del', vmNs], { stdio: 'ignore' });
  } catch {
    /* not created */
  }
  network.remove();
});

function nftCounter(netns: string, table: string, comment: string): number {
  const listing = JSON.parse(execFileSync('ip', ['netns', 'exec', netns, 'nft', '-j', 'list', 'table', 'bridge', table], { encoding: 'utf8' }));
  for (const item of listing.nftables) {
    if (item.rule?.comment !== comment) continue;
    return item.rule.expr.find((e: { counter?: { packets: number } }) => e.counter)!.counter.packets;
  }
  throw new Error(`no rule ${comment} in ${table}`);
}

test('a renewal at T1 goes unicast to the server id and is answered before T2; nothing is left', { timeout: 90_000 }, async () => {
  // The real responder, with a lease short enough to reach T1 within the test.
  const manager = new NetworkManager(network.config, silentLogger, () => {}, {
    startDhcp: (netnsPath, leases, logger) => startDhcpServerInNetns(netnsPath, leases.map((l) => ({ ...l, leaseSeconds: LEASE_SECONDS })), logger),
  });
  await manager.load();
  const p = sandboxParams();
  await manager.setup(p);
  try {
    const ready = await manager.vmNetwork({ sandboxId: p.sandboxId });
    assert.equal(ready.ready, true, JSON.stringify(ready));
    const iface = ready.ready ? ready.network.interfaces[0]! : assert.fail();
    assert.equal(iface.binding.kind, 'tap');
    const { bridge, tap } = iface.binding.kind === 'tap' ? iface.binding : assert.fail();
    const sandboxNs = netnsNameFor(p.sandboxId);
    execFileSync('ip', ['netns', 'add', vmNs]);
    // The stand-in VM takes the TAP's place on the bridge, under its name: the redirect to the
    // server address takes the frames of that port only.
    execFileSync('ip', ['-n', sandboxNs, 'link', 'del', tap]);
    execFileSync('ip', ['link', 'add', `vtv${tag}`, 'netns', vmNs, 'address', iface.mac, 'type', 'veth', 'peer', 'name', tap, 'netns', sandboxNs]);
    execFileSync('ip', ['-n', sandboxNs, 'link', 'set', tap, 'master', bridge, 'up']);
    execFileSync('ip', ['-n', vmNs, 'link', 'set', `vtv${tag}`, 'up']);

    // The client configures what it is given (so its renewal goes out through the kernel, by its
    // routes) and logs each event with the time it happened.
    const log = join(network.config.stateDir, `udhcpc-${tag}.log`);
    const script = join(network.config.stateDir, `udhcpc-${tag}.sh`);
    writeFileSync(script, [
      '#!/bin/sh',
      `echo "$1 $(cut -d' ' -f1 /proc/uptime) serverid=$serverid router=$router" >> ${log}`,
      'if [ "$1" = bound ]; then',
      '  ip addr add "$ip/$mask" dev "$interface"',
      '  for r in $router; do ip route add default via "$r" dev "$interface"; done',
      'fi',
      'exit 0',
      '',
    ].join('\n'));
    chmodSync(script, 0o755);
    const client = spawn('ip', ['netns', 'exec', vmNs, 'busybox', 'udhcpc', '-f', '-i', `vtv${tag}`, '-s', script, '-t', '3', '-T', '1'], { stdio: 'ignore' });
    children.add(client);
    const events = async (until: (lines: string[][]) => boolean, ms: number): Promise<string[][]> => {
      const deadline = Date.now() + ms;
      for (;;) {
        const lines = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').map((l) => l.split(' ')) : [];
        if (until(lines) || Date.now() > deadline) return lines;
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await events((l) => l.some((e) => e[0] === 'bound'), 10_000);
    // DISCOVER and REQUEST were broadcasts, flooded to the CNI veth too and dropped there.
    const droppedBeforeRenewal = nftCounter(sandboxNs, `vmlet-${bridge}`, 'dhcp-to-uplink');
    const lines = await events((l) => l.some((e) => e[0] === 'renew'), 45_000);
    client.kill('SIGTERM');
    children.delete(client);
    const bound = lines.find((e) => e[0] === 'bound');
    const renew = lines.find((e) => e[0] === 'renew');
    assert.ok(bound, `no lease: ${JSON.stringify(lines)}`);
    assert.ok(renew, `no renewal within 45 s: ${JSON.stringify(lines)}`);
    assert.equal(bound[2], 'serverid=169.254.67.67');
    const after = Number(renew[1]) - Number(bound[1]);
    assert.ok(after >= T1 - 0.5 && after < T2, `renewed ${after.toFixed(1)} s after the lease, expected at T1 = ${T1} s, before T2 = ${T2} s`);
    // It was the unicast to the server address (redirected to the bridge), not a broadcast rebinding.
    assert.ok(nftCounter(sandboxNs, `vmlet-${bridge}`, 'dhcp-to-server-address') >= 1, 'the renewal did not go through the redirect');
    assert.equal(nftCounter(sandboxNs, `vmlet-${bridge}`, 'dhcp-to-uplink'), droppedBeforeRenewal, 'the renewal went towards the CNI veth');
    assert.equal(nftCounter(sandboxNs, `vmlet-${bridge}`, 'server-arp-to-uplink'), 0);
    const status = await manager.status({ sandboxId: p.sandboxId });
    const stats = (status?.dhcp as { stats: { acks: number; offers: number } }).stats;
    assert.equal(stats.offers, 1);
    assert.equal(stats.acks, 2, 'one ACK for the lease, one for the renewal');
  } finally {
    try {
      execFileSync('ip', ['netns', 'del', vmNs], { stdio: 'ignore' });
    } catch {
      /* not created */
    }
    await manager.teardown({ sandboxId: p.sandboxId });
    await manager.close();
  }
  assert.equal(existsSync(`/run/netns/${netnsNameFor(p.sandboxId)}`), false, 'netns left');
  assert.deepEqual(network.leases(), [], 'IPAM lease left');
  assert.deepEqual(network.records(), [], 'netd record left');
});
