/**
 * Hand-built client datagrams, octet by octet as a client on the wire sends them (independent of
 * the encoder under test), and the lease the tests serve.
 */
import type { DhcpLease } from '../../../../src/network/dhcp/lease_policy.js';

export const VM_MAC = '02:00:c6:12:03:07';
export const OTHER_MAC = '02:00:c6:12:03:99';

export function hex(...groups: string[]): Buffer {
  return Buffer.from(groups.join('').replace(/\s+/g, ''), 'hex');
}

export function zeros(length: number): Buffer {
  return Buffer.alloc(length);
}

/** BOOTP header up to and including the magic cookie. */
export function header(fields: {
  op?: string;
  xid: string;
  secs?: string;
  flags?: string;
  ciaddr?: string;
  giaddr?: string;
  chaddr: string;
}): Buffer {
  return Buffer.concat([
    hex(fields.op ?? '01', '01', '06', '00'), // op, htype Ethernet, hlen 6, hops
    hex(fields.xid),
    hex(fields.secs ?? '0000', fields.flags ?? '0000'),
    hex(fields.ciaddr ?? '00000000'), // ciaddr
    hex('00000000'), // yiaddr
    hex('00000000'), // siaddr
    hex(fields.giaddr ?? '00000000'),
    hex(fields.chaddr), // 6 octets of MAC
    zeros(10), // rest of chaddr
    zeros(64), // sname
    zeros(128), // file
    hex('63 82 53 63'), // magic cookie
  ]);
}

const vmChaddr = VM_MAC.replaceAll(':', '');

/** A DISCOVER as udhcpc sends it: client id, max size, parameter request list, host name, end, pad to 300. */
export function discoverFromVm(): Buffer {
  const body = Buffer.concat([
    header({ xid: '3903f326', chaddr: vmChaddr }),
    hex('35 01 01'), // 53 message type: DISCOVER
    hex('3d 07 01', vmChaddr), // 61 client id: type 1 + MAC
    hex('39 02 05 dc'), // 57 max message size 1500
    hex('37 09 01 03 06 0c 0f 1a 1c 77 79'), // 55 PRL: 1 3 6 12 15 26 28 119 121
    hex('3c 0c', Buffer.from('udhcp 1.35.0').toString('hex')), // 60 vendor class (unknown to us)
    hex('ff'),
  ]);
  return Buffer.concat([body, zeros(300 - body.length)]);
}

/** The SELECTING REQUEST that follows the OFFER: requested IP and server id set, ciaddr zero. */
export function selectingRequestFromVm(requestedIp = 'c6 12 03 07', serverId = 'c6 12 03 01'): Buffer {
  const body = Buffer.concat([
    header({ xid: '3903f326', secs: '0001', chaddr: vmChaddr }),
    hex('35 01 03'), // REQUEST
    hex('3d 07 01', vmChaddr),
    hex('32 04', requestedIp), // 50 requested IP
    hex('36 04', serverId), // 54 server id
    hex('39 02 05 dc'),
    hex('37 09 01 03 06 0c 0f 1a 1c 77 79'),
    hex('00 00 00'), // padding between options is legal
    hex('ff'),
  ]);
  return Buffer.concat([body, zeros(300 - body.length)]);
}

/** A message of the given type from `mac` with optional ciaddr, requested IP, flags. */
export function requestOf(options: {
  type: number;
  mac?: string;
  ciaddr?: string;
  requestedIp?: string;
  serverId?: string;
  flags?: string;
  giaddr?: string;
  op?: string;
  extra?: Buffer;
}): Buffer {
  const toHex = (ip: string) => Buffer.from(ip.split('.').map(Number)).toString('hex');
  const parts = [
    header({
      op: options.op,
      xid: 'a1b2c3d4',
      flags: options.flags,
      ciaddr: options.ciaddr ? toHex(options.ciaddr) : undefined,
      giaddr: options.giaddr ? toHex(options.giaddr) : undefined,
      chaddr: (options.mac ?? VM_MAC).replaceAll(':', ''),
    }),
    hex('35 01', options.type.toString(16).padStart(2, '0')),
  ];
  if (options.requestedIp) parts.push(hex('32 04', toHex(options.requestedIp)));
  if (options.serverId) parts.push(hex('36 04', toHex(options.serverId)));
  if (options.extra) parts.push(options.extra);
  parts.push(hex('ff'));
  return Buffer.concat(parts);
}

export function vmLease(overrides: Partial<DhcpLease> = {}): DhcpLease {
  return {
    mac: VM_MAC,
    ip: '198.18.3.7',
    prefixLength: 24,
    gateway: '198.18.3.1',
    routes: [
      { destination: '0.0.0.0/0', gateway: '198.18.3.1' },
      { destination: '198.19.0.0/16', gateway: '198.18.3.254' },
      { destination: '198.18.128.0/17' },
      { destination: 'fd00::/64', gateway: 'fd00::1' },
    ],
    dns: {
      nameservers: ['198.18.0.10', '198.18.0.11', 'fd00::10'],
      search: ['default.svc.cluster.local', 'svc.cluster.local', 'cluster.local'],
      options: ['ndots:5'],
      domain: 'cluster.local',
    },
    hostname: 'pod-a',
    mtu: 1450,
    leaseSeconds: 3600,
    serverId: '198.18.3.1',
    ...overrides,
  };
}
