/**
 * netd with a Calico-shaped network against the fake host: the VM's lease carries the pod IP's
 * /24 and the fake gateway, the wiring makes the bridge the gateway (address, Calico's routes,
 * ARP sender rewrite, forwarding), and the teardown puts the sysctls back before CNI DEL.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config/load.js';
import { silentLogger } from '../../../src/log.js';
import { NetworkManager } from '../../../src/netd/manager.js';
import { assertGolden } from '../../helpers/golden.js';
import { FakeHost } from './fake_host.js';

test('a Calico result: fake gateway in the /24, the bridge routes through 169.254.1.1, all undone on teardown (golden)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-netd-calico-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const confDir = join(dir, 'cni');
  mkdirSync(confDir);
  writeFileSync(join(confDir, '10-calico.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'k8s-pod-network', plugins: [{ type: 'calico' }] }));
  const config = loadConfig({ flags: { 'state-dir': join(dir, 'state'), 'cni-conf-dir': confDir, 'log-level': 'silent' } });
  const host = new FakeHost();
  const manager = new NetworkManager(config, silentLogger, () => {}, host.sideEffects());
  t.after(() => manager.close());
  await manager.load();
  host.section('setup pod1');
  const setup = await manager.setup({
    sandboxId: 'pod1', podName: 'web', podNamespace: 'default', podUid: 'uid-pod1', hostname: 'web',
    dns: { servers: [], searches: [], options: [] }, portMappings: [],
  });
  assert.deepEqual(setup.podIps, ['198.18.214.2']);
  host.section('vmNetwork pod1');
  const vm = await manager.vmNetwork({ sandboxId: 'pod1' });
  assert.ok(vm.ready, JSON.stringify(vm));
  const [eth0] = vm.network.interfaces;
  assert.deepEqual(eth0!.ips, [{ family: 4, address: '198.18.214.2', prefixLength: 24, gateway: '198.18.214.254' }]);
  assert.deepEqual(eth0!.routes, [{ destination: '0.0.0.0/0', gateway: '198.18.214.254' }]);
  assert.deepEqual(host.sysctls.get('vmlet-pod1'), {
    'net.ipv4.conf.all.forwarding': '1', 'net.ipv4.conf.all.send_redirects': '0', [`net.ipv4.conf.${eth0!.binding.kind === 'tap' ? eth0!.binding.bridge : ''}.send_redirects`]: '0',
  });
  host.section('teardown pod1');
  await manager.teardown({ sandboxId: 'pod1' });
  const log = host.text();
  assert.ok(log.includes('sysctl vmlet-pod1: write net.ipv4.conf.all.forwarding=0 net.ipv4.conf.all.send_redirects=1'), 'the sysctls are put back');
  assert.ok(log.indexOf('nft vmlet-pod1: remove arp vmlet-calico-') < log.indexOf('cni DEL calico'), 'the ARP table goes before CNI DEL');
  assert.deepEqual(host.describe(), [], 'netns left');
  assert.deepEqual([...host.dhcpRunning], []);
  assert.deepEqual((existsSync(join(config.stateDir, 'netd')) ? readdirSync(join(config.stateDir, 'netd')) : []).filter((f) => f.endsWith('.json')), []);
  assertGolden('netd/calico.log', log);
});
