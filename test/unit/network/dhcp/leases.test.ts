import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LEASE_SECONDS, leasesFor } from '../../../../src/network/dhcp/leases.js';
import { DHCP_SERVER_ADDRESS, serverAddressRoutes } from '../../../../src/network/dhcp/server_address.js';
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
      leaseSeconds: LEASE_SECONDS, serverId: DHCP_SERVER_ADDRESS,
    },
    // No default route: an on-link host route to the server address, so a renewal at T1 can reach it.
    {
      mac: '0a:58:c6:12:71:02', ip: '198.18.112.2', prefixLength: 24, routes: [{ destination: '169.254.67.67/32', gateway: '0.0.0.0' }],
      dns, hostname: 'web', mtu: 1450, leaseSeconds: LEASE_SECONDS, serverId: '169.254.67.67',
    },
  ]);
});

test('the lease time given (--dhcp-lease-time) goes into every lease', () => {
  const network: VmNetwork = {
    interfaces: [
      iface('eth0', '0a:58:c6:12:6e:02', { ips: [{ family: 4, address: '198.18.110.2', prefixLength: 24, gateway: '198.18.110.1' }] }),
      iface('net1', '0a:58:c6:12:6f:02', { ips: [{ family: 4, address: '198.18.111.2', prefixLength: 24 }] }),
    ],
    dns,
  };
  assert.deepEqual(leasesFor(network, 40).map((l) => l.leaseSeconds), [40, 40]);
  assert.equal(LEASE_SECONDS, 86_400);
});

test('the server address needs a route of its own only where the lease has no default route', () => {
  assert.equal(DHCP_SERVER_ADDRESS, '169.254.67.67');
  assert.deepEqual(serverAddressRoutes([], '198.18.110.1'), []);
  assert.deepEqual(serverAddressRoutes([{ destination: '0.0.0.0/0', gateway: '198.18.110.1' }], undefined), []);
  assert.deepEqual(serverAddressRoutes([{ destination: '198.18.0.0/15' }], undefined), [{ destination: '169.254.67.67/32', gateway: '0.0.0.0' }]);
  assert.deepEqual(serverAddressRoutes([{ destination: '169.254.67.67/32', gateway: '0.0.0.0' }], undefined), []);
});
