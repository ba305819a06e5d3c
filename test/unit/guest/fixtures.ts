import type { VmNetwork } from '../../../src/network/types.js';

/**
 * A sandbox network with two TAP NICs and one SR-IOV VF, on 198.18.0.0/15 test addresses.
 * eth0 has the default routes; net1's default route must be dropped (second one of its family)
 * and its gateway-less route with no interface gateway too.
 */
export function threeNicNetwork(): VmNetwork {
  return {
    interfaces: [
      {
        name: 'eth0',
        // All-digit MAC: YAML 1.1 would read it unquoted as a sexagesimal integer.
        mac: '52:54:00:12:34:56',
        mtu: 1500,
        ips: [
          { family: 4, address: '198.18.0.5', prefixLength: 24, gateway: '198.18.0.1' },
          { family: 6, address: 'fd00:198:18::5', prefixLength: 64, gateway: 'fd00:198:18::1' },
        ],
        routes: [
          { destination: '0.0.0.0/0', gateway: '198.18.0.1' },
          { destination: '198.19.0.0/16', gateway: '198.18.0.254' },
          { destination: '::/0' },
        ],
        binding: { kind: 'tap', tap: 'vmt-a1b2c3-0', bridge: 'vmb-a1b2c3-0' },
      },
      {
        name: 'net1',
        mac: '0A:58:C6:12:01:07',
        mtu: 9000,
        ips: [{ family: 4, address: '198.18.1.7', prefixLength: 24 }],
        routes: [
          { destination: '0.0.0.0/0', gateway: '198.18.1.1' },
          { destination: '198.18.128.0/17' },
          { destination: '198.18.64.7/18', gateway: '198.18.1.254' },
        ],
        binding: { kind: 'tap', tap: 'vmt-a1b2c3-1', bridge: 'vmb-a1b2c3-1' },
      },
      {
        name: 'net2',
        mac: '02:00:00:aa:bb:cc',
        mtu: 1500,
        ips: [{ family: 4, address: '198.18.2.9', prefixLength: 28 }],
        routes: [],
        binding: { kind: 'sriov', pciAddress: '0000:03:10.2' },
      },
    ],
    dns: {
      nameservers: ['198.18.0.10', 'fd00:198:18::10'],
      search: ['default.svc.cluster.local', 'svc.cluster.local'],
      options: ['ndots:5'],
    },
    hostname: 'web-0',
  };
}

/**
 * A sandbox network with one TAP NIC (eth0, the pod IP, served by DHCP) and two SR-IOV VFs on
 * other networks (net1 with a route, net2 IPv4+IPv6), as the sriov binding describes them.
 */
export function sriovNetwork(): VmNetwork {
  return {
    interfaces: [
      {
        name: 'eth0',
        mac: '0a:58:c6:12:aa:05',
        mtu: 1450,
        ips: [{ family: 4, address: '198.18.170.5', prefixLength: 24, gateway: '198.18.170.1' }],
        routes: [{ destination: '0.0.0.0/0', gateway: '198.18.170.1' }],
        binding: { kind: 'tap', tap: 'vmt-5d2c-0', bridge: 'vmb-5d2c-0' },
      },
      {
        name: 'net1',
        mac: '02:5d:2c:00:01:01',
        mtu: 9000,
        ips: [{ family: 4, address: '198.18.171.20', prefixLength: 24, gateway: '198.18.171.1' }],
        routes: [{ destination: '198.18.172.0/24', gateway: '198.18.171.254' }],
        binding: { kind: 'sriov', pciAddress: '0000:3b:02.1' },
      },
      {
        name: 'net2',
        mac: '02:5d:2c:00:02:02',
        mtu: 1500,
        ips: [
          { family: 4, address: '198.18.173.9', prefixLength: 28 },
          { family: 6, address: 'fd00:198:18:173::9', prefixLength: 64, gateway: 'fd00:198:18:173::1' },
        ],
        routes: [{ destination: '::/0', gateway: 'fd00:198:18:173::1' }],
        binding: { kind: 'sriov', pciAddress: '0000:af:0a.7' },
      },
    ],
    dns: { nameservers: ['198.18.170.10'], search: ['default.svc.cluster.local'], options: [] },
    hostname: 'vf-pod',
  };
}
