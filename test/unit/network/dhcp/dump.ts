/** Review-friendly text forms of DHCP messages for golden files (test code only). */
import type { DhcpMessage } from '../../../../src/network/dhcp/packet.js';

/** Offset, 16 hex octets, ASCII: the classic hexdump -C layout. */
export function hexDump(data: Buffer): string {
  const lines: string[] = [];
  for (let offset = 0; offset < data.length; offset += 16) {
    const row = data.subarray(offset, offset + 16);
    const hex = [...row].map((b) => b.toString(16).padStart(2, '0'));
    const left = hex.slice(0, 8).join(' ');
    const right = hex.slice(8).join(' ');
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${offset.toString(16).padStart(8, '0')}  ${left.padEnd(23)}  ${right.padEnd(23)}  |${ascii}|`);
  }
  return lines.join('\n') + '\n';
}

/** Header fields and options (code, length, hex value) above the hex dump of the encoded bytes. */
export function describe(message: DhcpMessage, encoded: Buffer): string {
  const header = [
    `op=${message.op} htype=${message.htype} hlen=${message.hlen} hops=${message.hops}`,
    `xid=0x${message.xid.toString(16).padStart(8, '0')} secs=${message.secs} flags=0x${message.flags.toString(16).padStart(4, '0')}`,
    `ciaddr=${message.ciaddr} yiaddr=${message.yiaddr} siaddr=${message.siaddr} giaddr=${message.giaddr}`,
    `chaddr=${message.chaddr.toString('hex')} sname=${JSON.stringify(message.sname)} file=${JSON.stringify(message.file)}`,
  ];
  const options = [...message.options].map(
    ([code, value]) => `option ${String(code).padStart(3)} len ${String(value.length).padStart(3)}: ${value.toString('hex')}`,
  );
  return [...header, ...options, `encoded ${encoded.length} octets:`, hexDump(encoded)].join('\n');
}
