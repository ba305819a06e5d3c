import test from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeMessage,
  encodeMessage,
  MalformedDhcpPacketError,
  OptionCode,
  readIpv4ListOption,
  readIpv4Option,
  readMessageType,
  readParameterRequestList,
  readU16Option,
  type DhcpMessage,
} from '../../../../src/network/dhcp/packet.js';
import { InvalidArgumentError } from '../../../../src/errors.js';
import { discoverFromVm, header, hex, selectingRequestFromVm, VM_MAC, zeros } from './fixtures.js';

const vmChaddr = VM_MAC.replaceAll(':', '');

test('decodes a hand-built DISCOVER field by field', () => {
  const message = decodeMessage(discoverFromVm());
  assert.equal(message.op, 1);
  assert.equal(message.htype, 1);
  assert.equal(message.hlen, 6);
  assert.equal(message.hops, 0);
  assert.equal(message.xid, 0x3903f326);
  assert.equal(message.secs, 0);
  assert.equal(message.flags, 0);
  assert.equal(message.ciaddr, '0.0.0.0');
  assert.equal(message.giaddr, '0.0.0.0');
  assert.equal(message.chaddr.toString('hex'), vmChaddr);
  assert.equal(message.sname, '');
  assert.equal(message.file, '');
  assert.equal(readMessageType(message), 1);
  assert.deepEqual([...message.options.keys()], [53, 61, 57, 55, 60]);
  assert.equal(message.options.get(OptionCode.CLIENT_ID)!.toString('hex'), `01${vmChaddr}`);
  assert.equal(readU16Option(message, OptionCode.MAX_MESSAGE_SIZE), 1500);
  assert.deepEqual(readParameterRequestList(message), [1, 3, 6, 12, 15, 26, 28, 119, 121]);
  assert.equal(message.options.get(60)!.toString('latin1'), 'udhcp 1.35.0', 'unknown options are kept');
});

test('decodes a hand-built SELECTING REQUEST with padding between options', () => {
  const message = decodeMessage(selectingRequestFromVm());
  assert.equal(readMessageType(message), 3);
  assert.equal(message.secs, 1);
  assert.equal(readIpv4Option(message, OptionCode.REQUESTED_IP), '198.18.3.7');
  assert.equal(readIpv4Option(message, OptionCode.SERVER_ID), '198.18.3.1');
  assert.deepEqual([...message.options.keys()], [53, 61, 50, 54, 57, 55]);
});

test('decode tolerates a missing end option and ignores what follows the end option', () => {
  const noEnd = Buffer.concat([header({ xid: '00000001', chaddr: vmChaddr }), hex('35 01 01 00 00')]);
  assert.equal(readMessageType(decodeMessage(noEnd)), 1);
  const trailing = Buffer.concat([header({ xid: '00000001', chaddr: vmChaddr }), hex('35 01 01 ff 35 09 99')]);
  const message = decodeMessage(trailing);
  assert.deepEqual([...message.options.keys()], [53]);
});

test('decode concatenates repeated option instances in order (RFC 3396)', () => {
  const datagram = Buffer.concat([
    header({ xid: '00000001', chaddr: vmChaddr }),
    hex('06 04 c6 12 00 0a'),
    hex('35 01 01'),
    hex('06 04 c6 12 00 0b'),
    hex('ff'),
  ]);
  assert.deepEqual(readIpv4ListOption(decodeMessage(datagram), OptionCode.DNS_SERVERS), ['198.18.0.10', '198.18.0.11']);
});

test('decode reads overloaded file then sname fields as options (option 52)', () => {
  const base = header({ xid: '00000001', chaddr: vmChaddr });
  base.set(hex('0c 03 66 6f 6f ff'), 108); // file: hostname "foo"
  base.set(hex('3c 01 78 ff'), 44); // sname: option 60 "x"
  const datagram = Buffer.concat([base, hex('35 01 01 34 01 03 ff')]);
  const message = decodeMessage(datagram);
  assert.equal(message.options.get(OptionCode.HOSTNAME)!.toString(), 'foo');
  assert.equal(message.options.get(60)!.toString(), 'x');
  assert.equal(message.sname, '');
  assert.equal(message.file, '');
});

test('encode splits an option longer than 255 octets into consecutive instances and decode rejoins it', () => {
  const long = Buffer.alloc(600, 0xab);
  const message: DhcpMessage = {
    op: 2, htype: 1, hlen: 6, hops: 0, xid: 7, secs: 0, flags: 0,
    ciaddr: '0.0.0.0', yiaddr: '198.18.3.7', siaddr: '0.0.0.0', giaddr: '0.0.0.0',
    chaddr: Buffer.from(vmChaddr, 'hex'), sname: '', file: '',
    options: new Map([[53, Buffer.from([2])], [119, long]]),
  };
  const encoded = encodeMessage(message);
  const at = 240 + 3; // after the cookie and option 53
  assert.deepEqual([encoded[at], encoded[at + 1]], [119, 255]);
  assert.deepEqual([encoded[at + 257], encoded[at + 258]], [119, 255]);
  assert.deepEqual([encoded[at + 514], encoded[at + 515]], [119, 90]);
  assert.equal(encoded[at + 516 + 90], 255, 'end option follows');
  assert.deepEqual(decodeMessage(encoded), message);
});

test('encode pads short messages to the 300-octet BOOTP minimum and round-trips', () => {
  const message: DhcpMessage = {
    op: 2, htype: 1, hlen: 6, hops: 0, xid: 0xdeadbeef, secs: 3, flags: 0x8000,
    ciaddr: '198.18.3.7', yiaddr: '198.18.3.7', siaddr: '0.0.0.0', giaddr: '0.0.0.0',
    chaddr: Buffer.from(vmChaddr, 'hex'), sname: 'srv', file: 'boot',
    options: new Map([[53, Buffer.from([5])], [80, Buffer.alloc(0)]]),
  };
  const encoded = encodeMessage(message);
  assert.equal(encoded.length, 300);
  assert.deepEqual(decodeMessage(encoded), message);
});

test('encode rejects values that do not fit their fields', () => {
  const base: DhcpMessage = {
    op: 2, htype: 1, hlen: 6, hops: 0, xid: 1, secs: 0, flags: 0,
    ciaddr: '0.0.0.0', yiaddr: '0.0.0.0', siaddr: '0.0.0.0', giaddr: '0.0.0.0',
    chaddr: Buffer.alloc(6), sname: '', file: '', options: new Map(),
  };
  assert.throws(() => encodeMessage({ ...base, xid: 2 ** 32 }), InvalidArgumentError);
  assert.throws(() => encodeMessage({ ...base, yiaddr: '198.18.3.256' }), InvalidArgumentError);
  assert.throws(() => encodeMessage({ ...base, chaddr: Buffer.alloc(17) }), InvalidArgumentError);
  assert.throws(() => encodeMessage({ ...base, sname: 'x'.repeat(64) }), InvalidArgumentError);
  assert.throws(() => encodeMessage({ ...base, options: new Map([[255, Buffer.alloc(1)]]) }), InvalidArgumentError);
  assert.throws(() => encodeMessage({ ...base, options: new Map([[0, Buffer.alloc(1)]]) }), InvalidArgumentError);
});

const malformed: Array<[string, Buffer, RegExp]> = [
  ['empty datagram', Buffer.alloc(0), /need 240/],
  ['truncated header', discoverFromVm().subarray(0, 200), /200 octets/],
  ['header without cookie', discoverFromVm().subarray(0, 236), /236 octets/],
  ['bad magic cookie', (() => { const b = discoverFromVm(); b[239] = 0x64; return b; })(), /magic cookie is 63825364/],
  ['op 3', (() => { const b = discoverFromVm(); b[0] = 3; return b; })(), /op 3/],
  ['hlen 17', (() => { const b = discoverFromVm(); b[2] = 17; return b; })(), /hlen 17/],
  ['option length overruns the datagram', Buffer.concat([header({ xid: '00000001', chaddr: vmChaddr }), hex('35 01 01 0c 09 61 62')]), /claims 9 octets but only 2 remain/],
  ['option without its length octet', Buffer.concat([header({ xid: '00000001', chaddr: vmChaddr }), hex('35 01 01 0c')]), /no length octet/],
  ['overload value 4', Buffer.concat([header({ xid: '00000001', chaddr: vmChaddr }), hex('34 01 04 ff')]), /overload/],
  ['option overruns the overloaded file field', (() => {
    const b = Buffer.concat([header({ xid: '00000001', chaddr: vmChaddr }), hex('34 01 01 ff')]);
    b.set(hex('0c 05 61 62'), 108 + 124); // starts 4 octets before the end of file
    return b;
  })(), /file field claims 5 octets/],
  ['overload inside sname', (() => {
    const b = Buffer.concat([header({ xid: '00000001', chaddr: vmChaddr }), hex('34 01 02 ff')]);
    b.set(hex('34 01 01 ff'), 44);
    return b;
  })(), /only appear in the options field/],
];

for (const [name, datagram, message] of malformed) {
  test(`decode rejects ${name} with MalformedDhcpPacketError`, () => {
    assert.throws(() => decodeMessage(datagram), (err: unknown) => {
      assert.ok(err instanceof MalformedDhcpPacketError, `got ${String(err)}`);
      assert.ok(err instanceof InvalidArgumentError);
      assert.match(err.message, message);
      return true;
    });
  });
}

test('typed option readers reject wrong lengths with MalformedDhcpPacketError', () => {
  const message = decodeMessage(Buffer.concat([
    header({ xid: '00000001', chaddr: vmChaddr }),
    hex('35 01 09 32 03 c6 12 03 36 05 01 02 03 04 05 06 05 01 02 03 04 05 39 01 05 ff'),
  ]));
  assert.throws(() => readMessageType(message), MalformedDhcpPacketError);
  assert.throws(() => readIpv4Option(message, OptionCode.REQUESTED_IP), MalformedDhcpPacketError);
  assert.throws(() => readIpv4Option(message, OptionCode.SERVER_ID), MalformedDhcpPacketError);
  assert.throws(() => readIpv4ListOption(message, OptionCode.DNS_SERVERS), MalformedDhcpPacketError);
  assert.throws(() => readU16Option(message, OptionCode.MAX_MESSAGE_SIZE), MalformedDhcpPacketError);
});

/** xorshift32: a fixed sequence, so a failure here is reproducible. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
}

test('every truncation and many corruptions of a valid datagram decode or fail with MalformedDhcpPacketError only', () => {
  const valid = selectingRequestFromVm();
  const outcomes = { decoded: 0, rejected: 0 };
  const check = (datagram: Buffer) => {
    try {
      decodeMessage(datagram);
      outcomes.decoded += 1;
    } catch (err) {
      assert.ok(err instanceof MalformedDhcpPacketError, `unexpected ${String(err)}`);
      outcomes.rejected += 1;
    }
  };
  for (let length = 0; length <= valid.length; length++) check(Buffer.from(valid.subarray(0, length)));
  const next = prng(0x5eed);
  for (let round = 0; round < 5000; round++) {
    const copy = Buffer.from(valid);
    // Corrupt the options area, where lengths live, far more often than the header.
    for (let flips = 1 + (next() % 4); flips > 0; flips--) copy[236 + (next() % (copy.length - 236))] = next() & 0xff;
    check(copy.subarray(0, 236 + (next() % (copy.length - 235))));
  }
  assert.ok(outcomes.decoded > 0 && outcomes.rejected > 0, JSON.stringify(outcomes));
});
