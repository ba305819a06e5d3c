import { test } from 'node:test';
import assert from 'node:assert/strict';
import { podDns, vmNetworkOf } from '../../../src/network/vm_network.js';
import type { VmInterface } from '../../../src/network/types.js';

const cni = { nameservers: ['198.18.0.10'], search: ['cni.local'], options: [], domain: 'cni.local' };

test('the VM DNS: the pod DNSConfig wins, the CNI result fills in', () => {
  const dns = { servers: ['198.18.0.53'], searches: ['svc.cluster.local'], options: ['ndots:5'] };
  assert.deepEqual(podDns(dns, cni), { nameservers: dns.servers, search: dns.searches, options: dns.options, domain: 'cni.local' });
  assert.deepEqual(podDns({ servers: [], searches: [], options: [] }, cni), cni);
});

test('the VM network: interfaces in order, the DNS decided above, a hostname only when the pod has one', () => {
  const eth0: VmInterface = { name: 'eth0', mac: '0a:58:c6:12:6e:02', mtu: 1500, ips: [], routes: [], binding: { kind: 'tap', tap: 't', bridge: 'b' } };
  const empty = { servers: [], searches: [], options: [] };
  assert.deepEqual(vmNetworkOf([eth0], { hostname: 'web', dns: empty }, cni), { interfaces: [eth0], dns: cni, hostname: 'web' });
  assert.equal('hostname' in vmNetworkOf([eth0], { hostname: '', dns: empty }, cni), false);
});
