/** A SPDY/3.1 streaming client for tests: the HTTP upgrade by hand, then vmlet's own SpdySession in the client role. */
import net from 'node:net';
import { SpdySession, type SpdyStream } from '../../src/streaming/spdy/session.js';

/** HTTP upgrade to SPDY/3.1 by hand; resolves the status line, headers and (on 101) a client session. */
export async function spdyUpgrade(url: string, protocols: string[]): Promise<{ status: number; headers: string; session?: SpdySession }> {
  const u = new URL(url);
  const socket = net.connect(Number(u.port), u.hostname);
  await new Promise((r) => socket.once('connect', r));
  socket.write(
    `POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n` +
      protocols.map((p) => `X-Stream-Protocol-Version: ${p}\r\n`).join('') +
      'Content-Length: 0\r\n\r\n',
  );
  let buf = Buffer.alloc(0);
  for (;;) {
    const chunk: Buffer = await new Promise((resolve, reject) => {
      socket.once('data', resolve);
      socket.once('end', () => reject(new Error(`closed after ${buf.toString()}`)));
    });
    buf = Buffer.concat([buf, chunk]);
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) continue;
    const head = buf.subarray(0, end).toString();
    const status = Number(head.split(' ')[1]);
    if (status !== 101) return { status, headers: head + buf.subarray(end).toString() };
    socket.removeAllListeners('data');
    socket.removeAllListeners('end');
    return { status, headers: head, session: new SpdySession(socket, { role: 'client', head: buf.subarray(end + 4) }) };
  }
}

export function collect(s: SpdyStream): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    s.on('data', (d: Buffer) => (text += d.toString()));
    s.on('end', () => resolve(text));
    s.on('close', () => resolve(text));
  });
}

