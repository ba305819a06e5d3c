import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../../../../src/errors.js';
import { canonicalIpv6, formatIpv6, ipv6Prefix, ipv6ToBytes, linkLocalFromMac } from '../../../../src/network/ipv6/address.js';
import {
  Dhcp6MessageType,
  Dhcp6Option,
  Dhcp6Status,
  MalformedDhcpPacketError,
  decodeAddressList,
  decodeDhcp6Message,
  decodeDomainList,
  decodeIaNa,
  decodeOptionRequest,
  decodeStatus,
  duidLl,
  encodeDhcp6Message,
  encodeIaNa,
  optionValue,
  type Dhcp6Message,
} from '../../../../src/network/ipv6/dhcp6_packet.js';
import { decideDhcp6Reply, validateDhcp6Lease, type Dhcp6Decision } from '../../../../src/network/ipv6/dhcp6_policy.js';
import { assertGolden } from '../../../helpers/golden.js';

const VM_MAC = '8e:88:c2:92:a5:c3';
const SERVER_DUID = duidLl('32:d3:d5:2d:a9:41');
const lease = validateDhcp6Lease({ address: 'fd12:3456:789a:1::2', prefixLength: 64, dns: ['fd12:3456:789a:53::53'], search: ['example.test'], leaseSeconds: 86_400 });
const clientId = { code: Dhcp6Option.CLIENTID, value: duidLl(VM_MAC) };
const askIa = { code: Dhcp6Option.IA_NA, value: encodeIaNa({ iaid: 0x0a0b0c0d, t1: 0, t2: 0, addresses: [] }) };
const serverId = { code: Dhcp6Option.SERVERID, value: SERVER_DUID };
const oro = { code: Dhcp6Option.ORO, value: Buffer.from([0, 23, 0, 24]) };

function hexLines(data: Buffer): string {
  const lines: string[] = [];
  for (let i = 0; i < data.length; i += 16) lines.push(data.subarray(i, i + 16).toString('hex').replace(/(..)(?!$)/g, '$1 '));
  return lines.join('\n');
}

function describe(message: Dhcp6Message): string {
  const out = [`type ${message.type} xid ${message.transactionId.toString(16)}`];
  for (const o of message.options) {
    let text = o.value.toString('hex');
    if (o.code === Dhcp6Option.IA_NA) text = JSON.stringify(decodeIaNa(o.value));
    if (o.code === Dhcp6Option.DNS_SERVERS) text = decodeAddressList(o.value).join(' ');
    if (o.code === Dhcp6Option.DOMAIN_LIST) text = decodeDomainList(o.value).join(' ');
    if (o.code === Dhcp6Option.STATUS_CODE) text = JSON.stringify(decodeStatus(o.value));
    out.push(`  option ${o.code}: ${text}`);
  }
  return out.join('\n');
}

function reply(decision: Dhcp6Decision): Dhcp6Message {
  assert.equal(decision.action, 'reply', JSON.stringify(decision));
  if (decision.action !== 'reply') throw new Error('unreachable');
  return decision.message;
}

function decide(type: number, options: Dhcp6Message['options'], xid = 0x123456): Dhcp6Decision {
  // Through the wire format both ways, as the server sees it.
  return decideDhcp6Reply(lease, SERVER_DUID, decodeDhcp6Message(encodeDhcp6Message({ type, transactionId: xid, options })));
}

test('IPv6 text and octets: RFC 5952 form, prefixes, EUI-64 link-local addresses', () => {
  assert.equal(formatIpv6(ipv6ToBytes('2001:db8:0:0:1:0:0:1')), '2001:db8::1:0:0:1');
  assert.equal(canonicalIpv6('FD12:3456:0000::0002'), 'fd12:3456::2');
  assert.equal(canonicalIpv6('::ffff:192.0.2.1'), '::ffff:c000:201');
  assert.equal(formatIpv6(ipv6ToBytes('::')), '::');
  assert.equal(ipv6Prefix('fd12:3456:789a:1:2:3:4:5', 64), 'fd12:3456:789a:1::');
  assert.equal(ipv6Prefix('fd12:3456:789a:1::5', 57), 'fd12:3456:789a::');
  assert.equal(linkLocalFromMac('52:54:00:12:34:56'), 'fe80::5054:ff:fe12:3456');
  for (const bad of ['1.2.3.4', 'fe80::1%eth0', '1:2:3:4:5:6:7:8:9', '']) assert.throws(() => ipv6ToBytes(bad), InvalidArgumentError, bad);
});

test('SOLICIT → ADVERTISE → REQUEST → REPLY, RENEW, REBIND, rapid commit (golden wire bytes)', () => {
  const solicit = encodeDhcp6Message({ type: Dhcp6MessageType.SOLICIT, transactionId: 0x123456, options: [clientId, oro, askIa] });
  const advertise = reply(decide(Dhcp6MessageType.SOLICIT, [clientId, oro, askIa]));
  assert.equal(advertise.type, Dhcp6MessageType.ADVERTISE);
  assert.equal(advertise.transactionId, 0x123456);
  assert.deepEqual(optionValue(advertise, Dhcp6Option.CLIENTID), clientId.value);
  assert.deepEqual(optionValue(advertise, Dhcp6Option.SERVERID), SERVER_DUID);
  assert.deepEqual(optionValue(advertise, Dhcp6Option.PREFERENCE), Buffer.from([255]));
  const ia = decodeIaNa(optionValue(advertise, Dhcp6Option.IA_NA)!);
  assert.deepEqual(ia, { iaid: 0x0a0b0c0d, t1: 43_200, t2: 69_120, addresses: [{ address: 'fd12:3456:789a:1::2', preferredLifetime: 86_400, validLifetime: 86_400 }] });
  assert.deepEqual(decodeAddressList(optionValue(advertise, Dhcp6Option.DNS_SERVERS)!), ['fd12:3456:789a:53::53']);
  assert.deepEqual(decodeDomainList(optionValue(advertise, Dhcp6Option.DOMAIN_LIST)!), ['example.test']);

  const requestIa = { code: Dhcp6Option.IA_NA, value: optionValue(advertise, Dhcp6Option.IA_NA)! };
  const replyToRequest = reply(decide(Dhcp6MessageType.REQUEST, [clientId, serverId, requestIa], 0x0a0b0c));
  assert.equal(replyToRequest.type, Dhcp6MessageType.REPLY);
  const renew = reply(decide(Dhcp6MessageType.RENEW, [clientId, serverId, requestIa], 0x0d0e0f));
  assert.deepEqual(decodeIaNa(optionValue(renew, Dhcp6Option.IA_NA)!).addresses[0]!.address, 'fd12:3456:789a:1::2');
  const rebind = reply(decide(Dhcp6MessageType.REBIND, [clientId, requestIa], 0x0f0f0f));
  assert.equal(rebind.type, Dhcp6MessageType.REPLY);
  const rapid = reply(decide(Dhcp6MessageType.SOLICIT, [clientId, askIa, { code: Dhcp6Option.RAPID_COMMIT, value: Buffer.alloc(0) }], 0x111111));
  assert.equal(rapid.type, Dhcp6MessageType.REPLY);
  assert.deepEqual(optionValue(rapid, Dhcp6Option.RAPID_COMMIT), Buffer.alloc(0));

  const text = [
    '# SOLICIT (client)', hexLines(solicit),
    '# ADVERTISE', describe(advertise), hexLines(encodeDhcp6Message(advertise)),
    '# REPLY to REQUEST', describe(replyToRequest), hexLines(encodeDhcp6Message(replyToRequest)),
    '# REPLY to RENEW', describe(renew),
    '# REPLY to REBIND', describe(rebind),
    '# REPLY to a rapid-commit SOLICIT', describe(rapid),
    '',
  ].join('\n');
  assertGolden('network/ipv6/dhcp6-exchange.txt', text);
});

test('messages for another server, without a client id, or not a server\'s to answer get no reply', () => {
  const other = { code: Dhcp6Option.SERVERID, value: duidLl('02:00:00:00:00:99') };
  const cases: [number, Dhcp6Message['options'], string][] = [
    [Dhcp6MessageType.REQUEST, [clientId, other, askIa], 'not-for-us'],
    [Dhcp6MessageType.RENEW, [clientId, askIa], 'not-for-us'],
    [Dhcp6MessageType.SOLICIT, [clientId, serverId, askIa], 'not-for-us'],
    [Dhcp6MessageType.SOLICIT, [askIa], 'no-client-id'],
    [Dhcp6MessageType.ADVERTISE, [clientId, serverId], 'unhandled-type'],
    [Dhcp6MessageType.RECONFIGURE, [clientId, serverId], 'unhandled-type'],
  ];
  for (const [type, options, reason] of cases) {
    const decision = decide(type, options);
    assert.equal(decision.action, 'none', `type ${type}`);
    assert.equal(decision.action === 'none' ? decision.reason : '', reason, `type ${type}`);
  }
});

test('CONFIRM, RELEASE, DECLINE, INFORMATION-REQUEST, a second IA_NA and a SOLICIT without one', () => {
  const confirmIa = (address: string) => ({ code: Dhcp6Option.IA_NA, value: encodeIaNa({ iaid: 1, t1: 0, t2: 0, addresses: [{ address, preferredLifetime: 0, validLifetime: 0 }] }) });
  const statusOf = (m: Dhcp6Message) => decodeStatus(optionValue(m, Dhcp6Option.STATUS_CODE)!).code;
  assert.equal(statusOf(reply(decide(Dhcp6MessageType.CONFIRM, [clientId, confirmIa('fd12:3456:789a:1::2')]))), Dhcp6Status.SUCCESS);
  assert.equal(statusOf(reply(decide(Dhcp6MessageType.CONFIRM, [clientId, confirmIa('fd12:3456:789a:1::9')]))), Dhcp6Status.NOT_ON_LINK);
  assert.equal(statusOf(reply(decide(Dhcp6MessageType.RELEASE, [clientId, serverId, askIa]))), Dhcp6Status.SUCCESS);
  assert.equal(statusOf(reply(decide(Dhcp6MessageType.DECLINE, [clientId, serverId, askIa]))), Dhcp6Status.SUCCESS);
  const info = reply(decide(Dhcp6MessageType.INFORMATION_REQUEST, [oro]));
  assert.equal(optionValue(info, Dhcp6Option.IA_NA), undefined);
  assert.deepEqual(decodeAddressList(optionValue(info, Dhcp6Option.DNS_SERVERS)!), ['fd12:3456:789a:53::53']);
  const two = reply(decide(Dhcp6MessageType.SOLICIT, [clientId, askIa, { code: Dhcp6Option.IA_NA, value: encodeIaNa({ iaid: 2, t1: 0, t2: 0, addresses: [] }) }]));
  const ias = two.options.filter((o) => o.code === Dhcp6Option.IA_NA).map((o) => decodeIaNa(o.value));
  assert.equal(ias.length, 2);
  assert.equal(ias[0]!.addresses[0]!.address, 'fd12:3456:789a:1::2');
  assert.deepEqual(ias[1]!.addresses, []);
  assert.equal(ias[1]!.status?.code, Dhcp6Status.NO_ADDRS_AVAIL);
  const none = reply(decide(Dhcp6MessageType.SOLICIT, [clientId]));
  assert.equal(statusOf(none), Dhcp6Status.NO_ADDRS_AVAIL);
});

test('hostile datagrams are MalformedDhcpPacketError; bad leases and values are InvalidArgumentError', () => {
  for (const bad of [Buffer.alloc(0), Buffer.from([1, 0, 0]), Buffer.from([0, 0, 0, 0]), Buffer.from([12, 0, 0, 0]), Buffer.from([1, 0, 0, 1, 0, 1, 0, 9, 1])]) {
    assert.throws(() => decodeDhcp6Message(bad), MalformedDhcpPacketError, bad.toString('hex'));
  }
  assert.throws(() => decodeIaNa(Buffer.alloc(11)), MalformedDhcpPacketError);
  assert.throws(() => decodeAddressList(Buffer.alloc(15)), MalformedDhcpPacketError);
  assert.throws(() => decodeOptionRequest(Buffer.alloc(3)), MalformedDhcpPacketError);
  // A broken IA_NA in a request is answered as an empty one, not a crash.
  const broken = reply(decide(Dhcp6MessageType.SOLICIT, [clientId, { code: Dhcp6Option.IA_NA, value: Buffer.from([0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 40]) }]));
  assert.equal(decodeIaNa(optionValue(broken, Dhcp6Option.IA_NA)!).iaid, 5);
  assert.throws(() => validateDhcp6Lease({ ...lease, prefixLength: 129 }), InvalidArgumentError);
  assert.throws(() => validateDhcp6Lease({ ...lease, leaseSeconds: 10 }), InvalidArgumentError);
  assert.throws(() => validateDhcp6Lease({ ...lease, dns: ['198.18.0.1'] }), InvalidArgumentError);
  assert.throws(() => validateDhcp6Lease({ ...lease, address: 'nope' }), InvalidArgumentError);
  assert.throws(() => encodeDhcp6Message({ type: Dhcp6MessageType.REPLY, transactionId: 0x1000000, options: [] }), InvalidArgumentError);
  assert.throws(() => encodeDhcp6Message({ type: Dhcp6MessageType.RELAY_FORW, transactionId: 1, options: [] }), InvalidArgumentError);
  assert.throws(() => duidLl('nope'), InvalidArgumentError);
});
