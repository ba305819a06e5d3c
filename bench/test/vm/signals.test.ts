import { test } from 'node:test';
import assert from 'node:assert/strict';
import { acksFromVerboseInfo, firstDhcpAck, guestMarks, parseCriLog, rfc3339ToEpochMs } from '../../vm/signals.js';

const SB = 'a'.repeat(64);

test('firstDhcpAck takes the earliest ack line of that sandbox only', () => {
  const lines = [
    { msg: 'sent DHCP reply', reply: 'offer', sandboxId: SB, time: 100, mac: 'm', yiaddr: '198.19.0.2' },
    { msg: 'sent DHCP reply', reply: 'ack', sandboxId: 'b'.repeat(64), time: 90 },
    { msg: 'sent DHCP reply', reply: 'ack', sandboxId: SB, time: 130, mac: 'm', yiaddr: '198.19.0.2' },
    { msg: 'sent DHCP reply', reply: 'ack', sandboxId: SB, time: 120, mac: 'm', yiaddr: '198.19.0.2' },
    { msg: 'rpc', method: 'StartContainer', time: 50 },
  ];
  assert.deepEqual(firstDhcpAck(lines, SB), { atMs: 120, mac: 'm', yiaddr: '198.19.0.2' });
  assert.equal(firstDhcpAck(lines.slice(0, 2), SB), undefined);
});

test('rfc3339ToEpochMs keeps the sub-millisecond digits and honours offsets', () => {
  assert.equal(rfc3339ToEpochMs('2026-01-02T03:04:05.123456789Z'), Date.parse('2026-01-02T03:04:05Z') + 123.456789);
  assert.equal(rfc3339ToEpochMs('2026-01-02T03:04:05Z'), Date.parse('2026-01-02T03:04:05Z'));
  assert.equal(rfc3339ToEpochMs('2026-01-02T05:04:05.5+02:00'), Date.parse('2026-01-02T03:04:05Z') + 500);
  assert.ok(Number.isNaN(rfc3339ToEpochMs('yesterday')));
});

test('parseCriLog joins partial entries, skips junk and an unfinished last line', () => {
  const text = [
    '2026-01-02T03:04:05.000000001Z stdout P VMLET-GUEST ',
    '2026-01-02T03:04:05.100000000Z stdout F boot 6.12',
    'not a log line',
    '2026-01-02T03:04:06.000000000Z stdout F VMLET-GUEST ip eth0 198.19.7.3/24',
    '2026-01-02T03:04:07.000000000Z stdout P half',
  ].join('\n');
  const lines = parseCriLog(text);
  assert.deepEqual(lines.map((l) => l.text), ['VMLET-GUEST boot 6.12', 'VMLET-GUEST ip eth0 198.19.7.3/24']);
  assert.equal(lines[0]!.atMs, Date.parse('2026-01-02T03:04:05Z') + 100);
});

test('guestMarks finds boot, the eth0 address, ready and failures', () => {
  const at = (s: number, text: string) => ({ atMs: s, stream: 'stdout', text });
  const marks = guestMarks([
    at(1, 'SeaBIOS'),
    at(2, 'VMLET-GUEST boot 6.12.0'),
    at(3, 'VMLET-GUEST ip eth1 10.0.0.2/8'),
    at(4, 'VMLET-GUEST ip eth0 198.19.7.3/24'),
    at(5, 'VMLET-GUEST module-failed foo.ko'),
    at(6, 'VMLET-GUEST ready'),
  ]);
  assert.deepEqual(marks, { bootAtMs: 2, ipAtMs: 4, ip: '198.19.7.3/24', readyAtMs: 6, failures: ['VMLET-GUEST module-failed foo.ko'] });
  assert.deepEqual(guestMarks([]), { failures: [] });
});

test('acksFromVerboseInfo reads netd stats and tolerates anything else', () => {
  assert.equal(acksFromVerboseInfo(JSON.stringify({ network: { dhcp: { running: true, stats: { acks: 2 } } } })), 2);
  assert.equal(acksFromVerboseInfo(JSON.stringify({ network: { dhcp: { running: false, starting: true } } })), undefined);
  assert.equal(acksFromVerboseInfo('{'), undefined);
  assert.equal(acksFromVerboseInfo(undefined), undefined);
});
