import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodePacket,
  encodePacket,
  MessageStatus,
  MessageType,
  PACKET_MAX,
  PacketFramer,
  type PacketHeader,
} from '../../../src/libvirt/rpc/packet.js';
import { XdrError } from '../../../src/libvirt/rpc/xdr.js';

const header: PacketHeader = {
  program: 0x20008086,
  version: 1,
  procedure: 157,
  type: MessageType.CALL,
  serial: 7,
  status: MessageStatus.OK,
};

function packetWith(serial: number, payloadBytes: number): Buffer {
  return encodePacket({ ...header, serial }, Buffer.alloc(payloadBytes, serial & 0xff));
}

test('a call packet is length, prog, vers, proc, type, serial, status, payload', () => {
  const packet = encodePacket(header, Buffer.from('0000002a', 'hex'));
  assert.equal(
    packet.toString('hex'),
    '00000020' + '20008086' + '00000001' + '0000009d' + '00000000' + '00000007' + '00000000' + '0000002a',
  );
  const decoded = decodePacket(packet);
  assert.deepEqual(decoded.header, header);
  assert.equal(decoded.payload.toString('hex'), '0000002a');
});

test('an error reply header decodes type REPLY and status ERROR', () => {
  const packet = Buffer.from('0000001c' + '20008086' + '00000001' + '00000017' + '00000001' + 'fffffffe' + '00000001', 'hex');
  const { header: h, payload } = decodePacket(packet);
  assert.equal(h.type, MessageType.REPLY);
  assert.equal(h.status, MessageStatus.ERROR);
  assert.equal(h.procedure, 23);
  assert.equal(h.serial, 0xffff_fffe);
  assert.equal(payload.length, 0);
});

test('decodePacket refuses a length word that disagrees with the bytes', () => {
  const packet = encodePacket(header, Buffer.alloc(4));
  assert.throws(() => decodePacket(packet.subarray(0, packet.length - 1)), XdrError);
  assert.throws(() => decodePacket(Buffer.alloc(10)), XdrError);
});

test('framer: one packet split across many chunks, even inside the length word', () => {
  const packet = packetWith(1, 101);
  const framer = new PacketFramer();
  const cuts = [1, 2, 3, 5, 30, 64, packet.length];
  let from = 0;
  const out: Buffer[] = [];
  for (const to of cuts) {
    out.push(...framer.push(packet.subarray(from, to)));
    if (to < packet.length) assert.equal(out.length, 0, `nothing complete after ${to} bytes`);
    from = to;
  }
  assert.equal(out.length, 1);
  assert.deepEqual(out[0], packet);
  assert.equal(framer.pendingBytes, 0);
});

test('framer: several packets in one chunk, plus the start of the next', () => {
  const a = packetWith(1, 0);
  const b = packetWith(2, 13);
  const c = packetWith(3, 4096);
  const d = packetWith(4, 8);
  const framer = new PacketFramer();
  const first = framer.push(Buffer.concat([a, b, c, d.subarray(0, 6)]));
  assert.deepEqual(first, [a, b, c]);
  assert.equal(framer.pendingBytes, 6);
  const rest = framer.push(d.subarray(6));
  assert.deepEqual(rest, [d]);
  assert.deepEqual(
    [...first, ...rest].map((p) => decodePacket(p).header.serial),
    [1, 2, 3, 4],
  );
});

test('framer: byte-by-byte delivery of a stream of packets yields them all in order', () => {
  const packets = [packetWith(10, 3), packetWith(11, 0), packetWith(12, 77)];
  const stream = Buffer.concat(packets);
  const framer = new PacketFramer();
  const out: Buffer[] = [];
  for (let i = 0; i < stream.length; i++) out.push(...framer.push(stream.subarray(i, i + 1)));
  assert.deepEqual(out, packets);
});

test('framer: a large reply in 64 KiB chunks arrives intact', () => {
  const big = packetWith(5, 3 * 1024 * 1024 + 3);
  const framer = new PacketFramer();
  const out: Buffer[] = [];
  for (let at = 0; at < big.length; at += 65536) out.push(...framer.push(big.subarray(at, at + 65536)));
  assert.equal(out.length, 1);
  assert.ok(out[0]!.equals(big));
});

test('framer: an impossible length word is a protocol error', () => {
  assert.throws(() => new PacketFramer().push(Buffer.from('0000000a00000000', 'hex')), /outside/);
  const tooBig = Buffer.alloc(8);
  tooBig.writeUInt32BE(PACKET_MAX + 1, 0);
  assert.throws(() => new PacketFramer().push(tooBig), /outside/);
});

test('encodePacket refuses a payload beyond the protocol maximum', () => {
  assert.throws(() => encodePacket(header, Buffer.alloc(PACKET_MAX)), XdrError);
});
