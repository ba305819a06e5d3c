import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LEASE_SECONDS, leasesFor } from '../../../../src/network/dhcp/leases.js';
import type { VmInterface, VmNetwork } from '../../../../src/network/types.js';

const dns = { nameservers: ['198.18.110.1'], search: [], options: [] };

function iface(name: string, mac: string, extra: Partial<VmInterface> = {}): VmInterface {
  return { name, mac, mtu: 1450, ips: [], routes: [], binding: { kind: 'tap', tap: `t${name}`, bridge: `b${name}` }, ...extra };
}

test('one lease per tap interface with an IPv4 address, carrying its routes, MTU, the DNS and the hostname', () => {
  const network: VmNetwork = {
    interfaces: [
      iface('eth0', '0a:58:c6:12:6e:02', {
        ips: [{ family: 6, address: '2001:db8::2', prefixLength: 64 }, { family: 4, address: '198.18.110.2', prefixLength: 24, gateway: '198.18.110.1' }],
        routes: [{ destination: '0.0.0.0/0', gateway: '198.18.110.1' }],
      }),
      iface('net1', '0a:58:c6:12:6f:02', { ips: [{ family: 6, address: '2001:db8:1::2', prefixLength: 64 }] }),
      iface('net2', '0a:58:c6:12:70:02', { ips: [{ family: 4, address: '198.18.111.2', prefixLength: 24 }], binding: { kind: 'sriov', pciAddress: '0000:3b:02.1' } }),
      iface('net3', '0a:58:c6:12:71:02', { ips: [{ family: 4, address: '198.18.112.2', prefixLength: 24 }] }),
    ],
    dns,
    hostname: 'web',
  };
  assert.deepEqual(leasesFor(network), [
    {
      mac: '0a:58:c6:12:6e:02', ip: '198.18.110.2', prefixLength: 24, gateway: '198.18.110.1',
      routes: [{ destination: '0.0.0.0/0', gateway: '198.18.110.1' }], dns, hostname: 'web', mtu: 1450,
      leaseSeconds: LEASE_SECONDS, serverId: '198.18.110.1',
    },
    // No gateway: the VM's own address serves as the server id.
    { mac: '0a:58:c6:12:71:02', ip: '198.18.112.2', prefixLength: 24, routes: [], dns, hostname: 'web', mtu: 1450, leaseSeconds: LEASE_SECONDS, serverId: '198.18.112.2' },
  ]);
});
