/**
 * A Calico-shaped CNI result through netd's real wiring: the test plugin `calico` gives the
 * sandbox a /32 with the link-scope gateway 169.254.1.1 and makes its host side what Felix makes
 * it (proxy ARP, strict reverse-path filtering), in a netns standing in for the host, which holds
 * the host's address 198.18.213.1. A stand-in VM (a netns with a veth on the sandbox bridge
 * carrying the VM's MAC) runs busybox udhcpc: it must get the pod IP as a /24 with the fake
 * gateway 198.18.212.254, and reach the host through it. Teardown leaves nothing, the host side
 * of the veth included. Pod subnet 198.18.212.0/24, host 198.18.213.0/24.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.js';
import { silentLogger } from '../../../src/log.js';
import { NetworkManager } from '../../../src/netd/manager.js';
import { netnsNameFor } from '../../../src/network/names.js';
import { sandboxParams } from './bridge_network.js';

const POD_IP = '198.18.212.5';
const FAKE_GATEWAY = '198.18.212.254';
const HOST_IP = '198.18.213.1';
const tag = randomBytes(3).toString('hex');
const hostNs = `vt-${tag}-chost`;
const vmNs = `vt-${tag}-cvm`;
const dir = mkdtempSync(join(tmpdir(), 'vmlet-netd-calico-'));
const children = new Set<ChildProcess>();

function delNetns(name: string): void {
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  } catch {
    /* not created */
  }
}

after(() => {
  for (const child of children) child.kill('SIGKILL');
  delNetns(vmNs);
  delNetns(hostNs);
  rmSync(dir, { recursive: true, force: true });
});

test('a Calico-shaped result: the VM gets a /24 with a fake gateway on its bridge and reaches the host through it; nothing is left', { timeout: 60_000 }, async () => {
  // The stand-in host: its address on a device of its own, forwarding on, Calico's veth added by the plugin.
  execFileSync('ip', ['netns', 'add', hostNs]);
  // No dummy module on this kernel: a veth pair inside the host netns plays the host's uplink.
  execFileSync('ip', ['-n', hostNs, 'link', 'add', 'h0', 'type', 'veth', 'peer', 'name', 'h1']);
  execFileSync('ip', ['-n', hostNs, 'link', 'set', 'h0', 'up']);
  execFileSync('ip', ['-n', hostNs, 'link', 'set', 'h1', 'up']);
  execFileSync('ip', ['-n', hostNs, 'address', 'add', `${HOST_IP}/32`, 'dev', 'h0']);
  execFileSync('ip', ['-n', hostNs, 'route', 'add', 'default', 'dev', 'h1']);
  execFileSync('ip', ['netns', 'exec', hostNs, 'sysctl', '-q', '-w', 'net.ipv4.conf.all.forwarding=1']);

  const binDir = join(dir, 'bin');
  const confDir = join(dir, 'cni');
  mkdirSync(binDir);
  mkdirSync(confDir);
  copyFileSync(join(import.meta.dirname, '../../fixtures/cni/plugins/calico'), join(binDir, 'vmlet-test-calico'));
  chmodSync(join(binDir, 'vmlet-test-calico'), 0o755);
  writeFileSync(join(confDir, '10-calico.conflist'), JSON.stringify({
    cniVersion: '1.0.0', name: `k8s-pod-network-${tag}`,
    plugins: [{ type: 'vmlet-test-calico', podAddress: POD_IP, hostNetns: `/run/netns/${hostNs}` }],
  }));
  const config = loadConfig({ flags: { 'state-dir': join(dir, 'state'), 'cni-conf-dir': confDir, 'cni-bin-dir': binDir, 'cni-cache-dir': join(dir, 'cache'), 'log-level': 'silent' } });
  assert.equal(config.calicoSubnet, 24);
  const manager = new NetworkManager(config, silentLogger);
  await manager.load();
  const p = sandboxParams();
  const sandboxNs = netnsNameFor(p.sandboxId);
  await manager.setup(p);
  try {
    const ready = await manager.vmNetwork({ sandboxId: p.sandboxId });
    assert.equal(ready.ready, true, JSON.stringify(ready));
    const iface = ready.ready ? ready.network.interfaces[0]! : assert.fail();
    assert.deepEqual(iface.ips, [{ family: 4, address: POD_IP, prefixLength: 24, gateway: FAKE_GATEWAY }]);
    assert.deepEqual(iface.routes, [{ destination: '0.0.0.0/0', gateway: FAKE_GATEWAY }]);
    const bridge = iface.binding.kind === 'tap' ? iface.binding.bridge : assert.fail();

    execFileSync('ip', ['netns', 'add', vmNs]);
    execFileSync('ip', ['link', 'add', `vtv${tag}`, 'netns', vmNs, 'address', iface.mac, 'type', 'veth', 'peer', 'name', `vtp${tag}`, 'netns', sandboxNs]);
    execFileSync('ip', ['-n', sandboxNs, 'link', 'set', `vtp${tag}`, 'master', bridge, 'up']);
    execFileSync('ip', ['-n', vmNs, 'link', 'set', `vtv${tag}`, 'up']);
    const log = join(dir, 'udhcpc.log');
    const script = join(dir, 'udhcpc.sh');
    writeFileSync(script, [
      '#!/bin/sh',
      `echo "$1 ip=$ip mask=$mask router=$router" >> ${log}`,
      'if [ "$1" = bound ]; then',
      '  ip addr add "$ip/$mask" dev "$interface"',
      '  for r in $router; do ip route add default via "$r" dev "$interface"; done',
      'fi',
      'exit 0',
      '',
    ].join('\n'));
    chmodSync(script, 0o755);
    const client = spawn('ip', ['netns', 'exec', vmNs, 'busybox', 'udhcpc', '-f', '-i', `vtv${tag}`, '-s', script, '-t', '5', '-T', '1'], { stdio: 'ignore' });
    children.add(client);
    const deadline = Date.now() + 15_000;
    while (!(existsSync(log) && readFileSync(log, 'utf8').includes('bound')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const bound = readFileSync(log, 'utf8').split('\n').find((l) => l.startsWith('bound'));
    assert.equal(bound, `bound ip=${POD_IP} mask=24 router=${FAKE_GATEWAY}`);

    // Through the fake gateway, the pod netns, Calico's 169.254.1.1 and the host's proxy ARP.
    const ping = execFileSync('ip', ['netns', 'exec', vmNs, 'busybox', 'ping', '-c', '2', '-W', '3', HOST_IP], { encoding: 'utf8' });
    assert.match(ping, /2 packets received/);
    // Only the bridge answered for the fake gateway; the host never saw an ARP for it.
    const neigh = execFileSync('ip', ['-n', vmNs, '-j', 'neigh', 'show', FAKE_GATEWAY], { encoding: 'utf8' });
    const bridgeMac = JSON.parse(execFileSync('ip', ['-n', sandboxNs, '-j', 'link', 'show', 'dev', bridge], { encoding: 'utf8' }))[0].address;
    assert.equal(JSON.parse(neigh)[0]?.lladdr, bridgeMac);
    client.kill('SIGTERM');
    children.delete(client);
  } finally {
    delNetns(vmNs);
    await manager.teardown({ sandboxId: p.sandboxId });
    await manager.close();
  }
  assert.equal(existsSync(`/run/netns/${sandboxNs}`), false, 'netns left');
  const hostLinks = JSON.parse(execFileSync('ip', ['-n', hostNs, '-j', 'link', 'show'], { encoding: 'utf8' })).map((l: { ifname: string }) => l.ifname);
  assert.deepEqual(hostLinks.sort(), ['h0', 'h1', 'lo'], 'the host side of the veth is left');
  assert.deepEqual(readdirSync(join(config.stateDir, 'netd')).filter((f) => f.endsWith('.json')), [], 'netd record left');
});
