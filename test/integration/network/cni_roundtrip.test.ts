/**
 * The tap binding between a real CNI ADD and DEL: Debian's bridge + host-local plugins wire the
 * pod, the binding wires the VM side and unwires it again, and the plugin's own CHECK then finds
 * the interface exactly as it left it (and DEL succeeds). The plugin runs inside a "host" test
 * netns (its bridge lands there, not in the real host namespace); IPAM state goes to a temp dir.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExecIpRunner } from '../../../src/network/iproute.js';
import { DhcpIsolation, ExecNftRunner } from '../../../src/network/isolation.js';
import { bindInterface } from '../../../src/network/bindings/binding.js';
import { BindingSelector } from '../../../src/network/bindings/select.js';
import { readInterfaceSnapshot } from '../../../src/network/bindings/snapshot.js';
import { TapBinding } from '../../../src/network/bindings/tap.js';
import type { TapWiredInterface } from '../../../src/network/bindings/types.js';
import { TestNamespaces, inNetns, ip, testIds } from './helpers.js';

const CNI_BIN = '/usr/lib/cni';

interface PluginRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the bridge plugin inside `hostNetns` the way a runtime does: env + config on stdin. */
function runBridgePlugin(hostNetns: string, command: string, podNetns: string, containerId: string, config: object) {
  return new Promise<PluginRun>((resolve, reject) => {
    const child = spawn('nsenter', [`--net=/run/netns/${hostNetns}`, '--', join(CNI_BIN, 'bridge')], {
      env: {
        PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
        CNI_COMMAND: command,
        CNI_CONTAINERID: containerId,
        CNI_NETNS: `/run/netns/${podNetns}`,
        CNI_IFNAME: 'eth0',
        CNI_PATH: CNI_BIN,
      },
    });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(JSON.stringify(config));
  });
}

test('CNI bridge plugin ADD → wire → unwire → CHECK and DEL succeed', async (t) => {
  const { tag, net } = testIds();
  const nss = new TestNamespaces(tag);
  const dataDir = mkdtempSync(join(tmpdir(), 'vmlet-test-ipam-'));
  t.after(async () => {
    await nss.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
    assert.deepEqual(await nss.leftovers(), []);
  });
  const host = await nss.create('host');
  const pod = await nss.create('pod');
  const containerId = `test${tag}`;
  const config = {
    cniVersion: '1.0.0',
    name: `vmlet-test-${tag}`,
    type: 'bridge',
    bridge: `cnit${tag}`,
    isGateway: true,
    ipMasq: false,
    ipam: { type: 'host-local', ranges: [[{ subnet: `${net}.0/24` }]], routes: [{ dst: '0.0.0.0/0' }], dataDir },
  };

  let started = performance.now();
  const add = await runBridgePlugin(host, 'ADD', pod, containerId, config);
  const addMs = performance.now() - started;
  assert.equal(add.code, 0, add.stderr || add.stdout);
  const result = JSON.parse(add.stdout) as {
    interfaces: { name: string; mac: string; sandbox?: string }[];
    ips: { address: string; gateway: string; interface: number }[];
  };
  const podIf = result.interfaces.find((i) => i.sandbox)!;
  const [address, prefix] = result.ips[0]!.address.split('/');

  const ipRunner = new ExecIpRunner();
  const isolation = new DhcpIsolation(new ExecNftRunner());
  const tap = new TapBinding({ ip: ipRunner, isolation });
  const selector = new BindingSelector({ bindings: { tap } });
  const ctx = {
    netnsName: pod,
    netnsPath: `/run/netns/${pod}`,
    sandboxId: containerId,
    index: 0,
    cniInterface: {
      name: 'eth0',
      mac: podIf.mac,
      ips: [{ family: 4 as const, address: address!, prefixLength: Number(prefix), gateway: result.ips[0]!.gateway }],
      routes: [{ destination: '0.0.0.0/0', gateway: result.ips[0]!.gateway }],
    },
  };

  started = performance.now();
  const before = await readInterfaceSnapshot(ipRunner, pod, 'eth0');
  const binding = await selector.select(before.link);
  const bound = await bindInterface(binding, ctx, async () => undefined, before);
  assert.equal(bound.kind, 'tap');
  const state = bound as TapWiredInterface;
  const wireMs = performance.now() - started;
  assert.equal(state.vm.mac, podIf.mac);

  // A stand-in VM NIC on the pod bridge, with the pod's MAC and IP, reaches the CNI gateway.
  const vm = await nss.create('vm');
  await ip(vm, 'link', 'add', 'vm0', 'address', state.vm.mac, 'type', 'veth', 'peer', 'name', 'vmport', 'netns', pod);
  await ip(pod, 'link', 'set', 'dev', 'vmport', 'master', state.bridge.name, 'up');
  await ip(vm, 'address', 'add', result.ips[0]!.address, 'dev', 'vm0');
  await ip(vm, 'link', 'set', 'dev', 'vm0', 'up');
  assert.equal(await inNetns(vm, 'busybox', ['ping', '-c', '1', '-W', '3', result.ips[0]!.gateway]), 0);
  await ip(pod, 'link', 'delete', 'dev', 'vmport');

  // While wired, CHECK must complain: the plugin sees the interface stripped.
  const checkConfig = { ...config, prevResult: result };
  const checkWired = await runBridgePlugin(host, 'CHECK', pod, containerId, checkConfig);
  assert.notEqual(checkWired.code, 0, 'CHECK passes on a wired interface, so it cannot tell a restore from none');

  started = performance.now();
  await tap.unwire(ctx, state);
  const unwireMs = performance.now() - started;

  const check = await runBridgePlugin(host, 'CHECK', pod, containerId, checkConfig);
  assert.equal(check.code, 0, `CHECK after unwire: ${check.stderr || check.stdout}`);
  const del = await runBridgePlugin(host, 'DEL', pod, containerId, checkConfig);
  assert.equal(del.code, 0, `DEL after unwire: ${del.stderr || del.stdout}`);
  assert.deepEqual(JSON.parse(await ip(pod, '-j', 'link', 'show')).map((l: { ifname: string }) => l.ifname), ['lo']);
  const leases = readdirSync(join(dataDir, config.name)).filter((f) => f.includes('.'));
  assert.ok(!leases.includes(address!), 'host-local released the address');

  t.diagnostic(`CNI ADD ${addMs.toFixed(1)} ms, snapshot+plan+wire ${wireMs.toFixed(1)} ms, unwire ${unwireMs.toFixed(1)} ms`);
});
