import test from 'node:test';
import assert from 'node:assert/strict';
import {
  classlessRoutesFor,
  decideReply,
  validateLease,
  type DhcpDecision,
} from '../../../../src/network/dhcp/lease_policy.js';
import { decodeClasslessRoutes } from '../../../../src/network/dhcp/classless_routes.js';
import { decodeDomainSearch } from '../../../../src/network/dhcp/domain_search.js';
import {
  decodeMessage,
  encodeMessage,
  MessageType,
  OptionCode,
  readIpv4ListOption,
  readIpv4Option,
  readMessageType,
  readU16Option,
  readU32Option,
} from '../../../../src/network/dhcp/packet.js';
import { InvalidArgumentError } from '../../../../src/errors.js';
import { assertGolden } from '../../../helpers/golden.js';
import { describe } from './dump.js';
import { discoverFromVm, hex, OTHER_MAC, requestOf, selectingRequestFromVm, VM_MAC, vmLease } from './fixtures.js';

const lease = validateLease(vmLease());

function decide(datagram: Buffer, forLease = lease): DhcpDecision {
  return decideReply(forLease, decodeMessage(datagram));
}

function replyOf(decision: DhcpDecision) {
  assert.equal(decision.action, 'reply', JSON.stringify(decision));
  if (decision.action !== 'reply') throw new Error('unreachable');
  return decision;
}

function noReplyOf(decision: DhcpDecision) {
  assert.equal(decision.action, 'none');
  if (decision.action !== 'none') throw new Error('unreachable');
  return decision;
}

test('DISCOVER from the VM gets an OFFER with every configured option (golden)', () => {
  const decision = replyOf(decide(discoverFromVm()));
  assert.equal(decision.reply, 'offer');
  const encoded = encodeMessage(decision.message);
  assertGolden('network/dhcp/offer.txt', describe(decision.message, encoded));

  // The same facts, checked field by field on the decoded wire form.
  const offer = decodeMessage(encoded);
  assert.equal(offer.op, 2);
  assert.equal(offer.xid, 0x3903f326);
  assert.equal(offer.yiaddr, '198.18.3.7');
  assert.equal(offer.ciaddr, '0.0.0.0');
  assert.equal(offer.chaddr.toString('hex'), VM_MAC.replaceAll(':', ''));
  assert.equal(readMessageType(offer), MessageType.OFFER);
  assert.equal(readIpv4Option(offer, OptionCode.SERVER_ID), '198.18.3.1');
  assert.equal(readIpv4Option(offer, OptionCode.SUBNET_MASK), '255.255.255.0');
  assert.equal(readIpv4Option(offer, OptionCode.BROADCAST_ADDRESS), '198.18.3.255');
  assert.deepEqual(readIpv4ListOption(offer, OptionCode.ROUTER), ['198.18.3.1']);
  assert.deepEqual(readIpv4ListOption(offer, OptionCode.DNS_SERVERS), ['198.18.0.10', '198.18.0.11']);
  assert.equal(readU32Option(offer, OptionCode.LEASE_TIME), 3600);
  assert.equal(readU32Option(offer, OptionCode.RENEWAL_TIME), 1800);
  assert.equal(readU32Option(offer, OptionCode.REBINDING_TIME), 3150);
  assert.equal(readU16Option(offer, OptionCode.INTERFACE_MTU), 1450);
  assert.equal(offer.options.get(OptionCode.HOSTNAME)!.toString(), 'pod-a');
  assert.equal(offer.options.get(OptionCode.DOMAIN_NAME)!.toString(), 'cluster.local');
  assert.deepEqual(decodeDomainSearch(offer.options.get(OptionCode.DOMAIN_SEARCH)!), [
    'default.svc.cluster.local',
    'svc.cluster.local',
    'cluster.local',
  ]);
  assert.deepEqual(decodeClasslessRoutes(offer.options.get(OptionCode.CLASSLESS_STATIC_ROUTES)!), [
    { destination: '0.0.0.0/0', router: '198.18.3.1' },
    { destination: '198.19.0.0/16', router: '198.18.3.254' },
    { destination: '198.18.128.0/17', router: '198.18.3.1' },
  ]);
  assert.equal(offer.options.get(OptionCode.CLIENT_ID)!.toString('hex'), `01${VM_MAC.replaceAll(':', '')}`);
  // No broadcast flag, no ciaddr: RFC 2131 §4.1 says unicast to yiaddr at chaddr.
  assert.deepEqual(decision.destination, { kind: 'link-unicast', address: '198.18.3.7', mac: VM_MAC, port: 68 });
});

test('SELECTING REQUEST for the offered address gets an ACK (golden)', () => {
  const decision = replyOf(decide(selectingRequestFromVm()));
  assert.equal(decision.reply, 'ack');
  const encoded = encodeMessage(decision.message);
  assertGolden('network/dhcp/ack.txt', describe(decision.message, encoded));
  assert.equal(readMessageType(decodeMessage(encoded)), MessageType.ACK);
  assert.equal(decision.message.yiaddr, '198.18.3.7');
});

test('SELECTING REQUEST for another address gets a NAK, broadcast (golden)', () => {
  const decision = replyOf(decide(selectingRequestFromVm('c6 12 03 08')));
  assert.equal(decision.reply, 'nak');
  const encoded = encodeMessage(decision.message);
  assertGolden('network/dhcp/nak.txt', describe(decision.message, encoded));
  const nak = decodeMessage(encoded);
  assert.equal(readMessageType(nak), MessageType.NAK);
  assert.equal(nak.yiaddr, '0.0.0.0');
  assert.equal(readIpv4Option(nak, OptionCode.SERVER_ID), '198.18.3.1');
  assert.equal(nak.options.get(OptionCode.LEASE_TIME), undefined);
  assert.equal(nak.options.get(OptionCode.CLIENT_ID)!.toString('hex'), `01${VM_MAC.replaceAll(':', '')}`);
  assert.equal(decision.destination.kind, 'broadcast');
});

test('SELECTING REQUEST naming another server gets no reply', () => {
  const decision = noReplyOf(decide(selectingRequestFromVm('c6 12 03 07', 'c6 12 03 02')));
  assert.equal(decision.reason, 'other-server-selected');
});

test('INIT-REBOOT: right address ACKed, wrong address NAKed, ciaddr set is invalid', () => {
  const ack = replyOf(decide(requestOf({ type: 3, requestedIp: '198.18.3.7' })));
  assert.equal(ack.reply, 'ack');
  assert.equal(ack.message.yiaddr, '198.18.3.7');
  const nak = replyOf(decide(requestOf({ type: 3, requestedIp: '198.18.9.9' })));
  assert.equal(nak.reply, 'nak');
  assert.equal(nak.destination.kind, 'broadcast');
  assert.equal(noReplyOf(decide(requestOf({ type: 3, requestedIp: '198.18.3.7', ciaddr: '198.18.3.7' }))).reason, 'invalid-request');
});

test('RENEWING/REBINDING: ciaddr of the lease is ACKed unicast to ciaddr, another ciaddr is NAKed', () => {
  const ack = replyOf(decide(requestOf({ type: 3, ciaddr: '198.18.3.7' })));
  assert.equal(ack.reply, 'ack');
  assert.equal(ack.message.ciaddr, '198.18.3.7');
  assert.equal(ack.message.yiaddr, '198.18.3.7');
  assert.deepEqual(ack.destination, { kind: 'unicast', address: '198.18.3.7', port: 68 });
  const nak = replyOf(decide(requestOf({ type: 3, ciaddr: '198.18.3.8' })));
  assert.equal(nak.reply, 'nak');
  assert.equal(nak.message.ciaddr, '0.0.0.0');
  assert.equal(nak.destination.kind, 'broadcast');
});

test('REQUEST with neither server id, requested IP nor ciaddr gets no reply', () => {
  assert.equal(noReplyOf(decide(requestOf({ type: 3 }))).reason, 'invalid-request');
});

test('the broadcast flag makes OFFER and ACK broadcast', () => {
  const offer = replyOf(decide(requestOf({ type: 1, flags: '8000' })));
  assert.equal(offer.destination.kind, 'broadcast');
  assert.equal(offer.message.flags, 0x8000);
  const ack = replyOf(decide(requestOf({ type: 3, flags: '8000', requestedIp: '198.18.3.7' })));
  assert.equal(ack.destination.kind, 'broadcast');
});

test('INFORM gets an ACK without address or lease time, unicast to ciaddr', () => {
  const ack = replyOf(decide(requestOf({ type: 8, ciaddr: '198.18.3.7' })));
  assert.equal(ack.reply, 'ack');
  assert.equal(ack.message.yiaddr, '0.0.0.0');
  assert.equal(ack.message.ciaddr, '198.18.3.7');
  for (const code of [OptionCode.LEASE_TIME, OptionCode.RENEWAL_TIME, OptionCode.REBINDING_TIME]) {
    assert.equal(ack.message.options.has(code), false, `option ${code}`);
  }
  assert.equal(ack.message.options.has(OptionCode.DNS_SERVERS), true);
  assert.deepEqual(ack.destination, { kind: 'unicast', address: '198.18.3.7', port: 68 });
  assert.equal(noReplyOf(decide(requestOf({ type: 8 }))).reason, 'invalid-request');
});

test('RELEASE and DECLINE are noted, not answered', () => {
  assert.equal(noReplyOf(decide(requestOf({ type: 7, ciaddr: '198.18.3.7' }))).reason, 'released');
  const declined = noReplyOf(decide(requestOf({ type: 4, requestedIp: '198.18.3.7' })));
  assert.equal(declined.reason, 'declined');
  assert.match(declined.detail, /198\.18\.3\.7/);
});

test('requests that are not for this lease get no reply', () => {
  assert.equal(noReplyOf(decide(requestOf({ type: 1, mac: OTHER_MAC }))).reason, 'unknown-client');
  assert.equal(noReplyOf(decideReply(undefined, decodeMessage(discoverFromVm()))).reason, 'unknown-client');
  assert.equal(noReplyOf(decide(requestOf({ type: 1, giaddr: '198.18.7.1' }))).reason, 'relayed');
  assert.equal(noReplyOf(decide(requestOf({ type: 2, op: '02' }))).reason, 'not-a-request');
  assert.equal(noReplyOf(decide(requestOf({ type: 2 }))).reason, 'unsupported-message');
  const bootp = decodeMessage(requestOf({ type: 1 }));
  bootp.options.delete(OptionCode.MESSAGE_TYPE);
  assert.equal(noReplyOf(decideReply(lease, bootp)).reason, 'not-dhcp');
  const tokenRing = decodeMessage(requestOf({ type: 1 }));
  tokenRing.htype = 6;
  assert.equal(noReplyOf(decideReply(lease, tokenRing)).reason, 'unsupported-hardware');
});

test('malformed option values in a request become invalid-request, never an exception', () => {
  const badType = requestOf({ type: 1, extra: hex('32 03 c6 12 03') });
  assert.equal(noReplyOf(decide(badType)).reason, 'invalid-request');
  const badMessageType = decodeMessage(requestOf({ type: 1 }));
  badMessageType.options.set(OptionCode.MESSAGE_TYPE, Buffer.from([9]));
  assert.equal(noReplyOf(decideReply(lease, badMessageType)).reason, 'invalid-request');
});

test('a reply that exceeds the client maximum drops options the client did not request', () => {
  const many = validateLease(vmLease({
    dns: { nameservers: ['198.18.0.10'], search: Array.from({ length: 12 }, (_, i) => `team-${i}.department-${i}.example-${i}`), options: [] },
  }));
  // Without option 57 the limit is 548 octets; this DISCOVER requests only mask, router and DNS.
  const decision = replyOf(decide(requestOf({ type: 1, extra: hex('37 03 01 03 06') }), many));
  const encoded = encodeMessage(decision.message);
  assert.ok(encoded.length <= 548, `reply is ${encoded.length} octets`);
  assert.equal(decision.message.options.has(OptionCode.DOMAIN_SEARCH), false);
  for (const code of [OptionCode.SUBNET_MASK, OptionCode.ROUTER, OptionCode.DNS_SERVERS, OptionCode.LEASE_TIME]) {
    assert.equal(decision.message.options.has(code), true, `option ${code}`);
  }
  // A client that allows 1500-octet datagrams gets everything.
  const roomy = replyOf(decide(requestOf({ type: 1, extra: hex('37 03 01 03 06 39 02 05 dc') }), many));
  assert.equal(roomy.message.options.has(OptionCode.DOMAIN_SEARCH), true);
});

test('classless routes: default route added from the gateway, on-link host route for an off-subnet gateway', () => {
  assert.deepEqual(classlessRoutesFor(vmLease({ routes: [] })), [{ destination: '0.0.0.0/0', router: '198.18.3.1' }]);
  assert.deepEqual(classlessRoutesFor(vmLease({ gateway: undefined, routes: [] })), []);
  // A /32 pod address with a link-local gateway, as some CNI plugins hand out.
  assert.deepEqual(
    classlessRoutesFor(vmLease({ ip: '198.18.5.9', prefixLength: 32, gateway: '169.254.1.1', routes: [{ destination: '0.0.0.0/0' }] })),
    [
      { destination: '169.254.1.1/32', router: '0.0.0.0' },
      { destination: '0.0.0.0/0', router: '169.254.1.1' },
    ],
  );
});

test('infinite lease: option 51 is 0xffffffff and no T1/T2', () => {
  const forever = validateLease(vmLease({ leaseSeconds: 0xffffffff }));
  const offer = replyOf(decide(discoverFromVm(), forever)).message;
  assert.equal(offer.options.get(OptionCode.LEASE_TIME)!.toString('hex'), 'ffffffff');
  assert.equal(offer.options.has(OptionCode.RENEWAL_TIME), false);
  assert.equal(offer.options.has(OptionCode.REBINDING_TIME), false);
});

test('validateLease normalises the MAC and rejects bad fields', () => {
  assert.equal(validateLease(vmLease({ mac: '02-00-C6-12-03-07' })).mac, VM_MAC);
  const bad: Array<[string, Parameters<typeof vmLease>[0]]> = [
    ['mac', { mac: '02:00:c6:12:03' }],
    ['ip', { ip: '198.18.3' }],
    ['prefix 0', { prefixLength: 0 }],
    ['prefix 33', { prefixLength: 33 }],
    ['gateway', { gateway: 'fe80::1' }],
    ['serverId', { serverId: '0.0.0.0' }],
    ['mtu', { mtu: 67 }],
    ['lease 0', { leaseSeconds: 0 }],
    ['lease fraction', { leaseSeconds: 1.5 }],
    ['route host bits', { routes: [{ destination: '198.19.0.1/16' }] }],
    ['route gateway', { routes: [{ destination: '198.19.0.0/16', gateway: 'nope' }] }],
    ['search domain', { dns: { nameservers: [], search: ['bad domain'], options: [] } }],
    ['nameserver', { dns: { nameservers: ['198.18.0.300'], search: [], options: [] } }],
    ['hostname', { hostname: 'pod_a;rm' }],
    ['domain', { dns: { nameservers: [], search: [], options: [], domain: 'a\nb' } }],
  ];
  for (const [what, override] of bad) assert.throws(() => validateLease(vmLease(override)), InvalidArgumentError, what);
});
