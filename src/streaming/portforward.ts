/**
 * kubelet's port-forward protocols on vmlet's streaming server.
 *
 * SPDY (`portforward.k8s.io`, also tunnelled in WebSocket binary messages as
 * `SPDY/3.1+portforward.k8s.io`): for each connection the client opens an error stream and a
 * data stream, both with headers `port` and `requestID` (pairs without requestID are matched by
 * stream id: data id = error id + 2, as kubelet does for old clients). Once a pair is complete the
 * server connects to the port; bytes flow between the data stream and the connection; a failure is
 * written as text to that pair's error stream. Pairs are independent: one failing leaves the rest.
 *
 * WebSocket channels (`v4.channel.k8s.io`, `v4.base64.channel.k8s.io`, or none): the ports come
 * from the `port` query parameters (else the CRI request); port i has data channel 2i and error
 * channel 2i+1, and the server's first message on each is the port as 2 bytes little-endian.
 */
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { errorText } from '../errors.js';
import type { SpdySession, SpdyStream } from './spdy/session.js';
import { decodeChannelMessage, sendChannel } from './remotecommand.js';

export const SPDY_PORTFORWARD_PROTOCOL = 'portforward.k8s.io';
export const WS_TUNNEL_PORTFORWARD_PROTOCOL = 'SPDY/3.1+portforward.k8s.io';
export const WS_PORTFORWARD_PROTOCOLS = ['v4.channel.k8s.io', 'v4.base64.channel.k8s.io', 'channel.k8s.io', 'base64.channel.k8s.io'];

/** Opens a connection to `port` as the pod sees it. */
export type PortDialer = (port: number, signal: AbortSignal) => Promise<Duplex>;

export function parsePort(text: string | undefined): number | undefined {
  if (text === undefined || !/^[0-9]{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}

interface Pair {
  error?: SpdyStream;
  data?: SpdyStream;
  timer: NodeJS.Timeout;
}

/** Serves port-forward over a SPDY session until the client closes it. */
export function servePortForwardSpdy(session: SpdySession, dial: PortDialer, describe: string, pairTimeoutMs: number): Promise<void> {
  const pairs = new Map<string, Pair>();
  const abort = new AbortController();
  return new Promise<void>((resolve) => {
    session.on('close', () => {
      abort.abort(new Error('client went away'));
      for (const p of pairs.values()) clearTimeout(p.timer);
      resolve();
    });
    session.on('stream', (s: SpdyStream) => {
      s.on('error', () => {});
      const type = s.header('streamtype');
      if (type !== 'error' && type !== 'data') {
        s.reset(3);
        return;
      }
      const requestId = s.header('requestid') ?? String(type === 'data' ? s.id - 2 : s.id);
      let pair = pairs.get(requestId);
      if (!pair) {
        pair = {
          timer: setTimeout(() => {
            pairs.delete(requestId);
            for (const half of [pair!.error, pair!.data]) half?.reset(5);
          }, pairTimeoutMs),
        };
        pairs.set(requestId, pair);
      }
      if (pair[type]) {
        s.reset(3);
        return;
      }
      pair[type] = s;
      s.reply().catch(() => {});
      if (pair.error && pair.data) {
        clearTimeout(pair.timer);
        pairs.delete(requestId);
        void forwardPair(pair.error, pair.data, dial, describe, abort.signal);
      }
    });
  });
}

async function forwardPair(errorStream: SpdyStream, data: SpdyStream, dial: PortDialer, describe: string, signal: AbortSignal): Promise<void> {
  const port = parsePort(data.header('port'));
  const fail = (message: string) => {
    if (!errorStream.destroyed) errorStream.end(Buffer.from(message));
    if (!data.destroyed) data.end();
  };
  if (port === undefined) return fail(`invalid port header ${JSON.stringify(data.header('port') ?? '')}`);
  let conn: Duplex;
  try {
    conn = await dial(port, signal);
  } catch (err) {
    return fail(`error forwarding port ${port} to ${describe}: ${errorText(err)}`);
  }
  await pipeBothWays(conn, data, (err) => {
    if (err && !errorStream.destroyed) errorStream.write(Buffer.from(`error forwarding port ${port} to ${describe}: ${errorText(err)}`));
  });
  if (!errorStream.destroyed) errorStream.end();
}

/**
 * Copies conn↔client, passing each half-close on: the end of what the pod sent ends the client's
 * stream (FIN), the end of the client's stream half-closes the pod connection, and bytes keep
 * flowing the other way meanwhile. Done when both directions have ended, when either side closes,
 * or on the pod connection's error (reported through onError).
 *
 * Written with explicit data/drain handlers, not Readable.pipe: pipe unpipes its source when the
 * destination finishes or closes, and a source without consumers never emits 'end'. When the pod
 * answered and closed before the client's FIN was read (a server that replies to a half-closed
 * request and exits), the client stream's end was never seen and the pair, and the client's error
 * stream, waited forever.
 */
export function pipeBothWays(conn: Duplex, client: Duplex, onError: (err?: Error) => void): Promise<void> {
  // The pod's FIN must not close our sending half: the client may still be sending.
  (conn as Duplex & { allowHalfOpen: boolean }).allowHalfOpen = true;
  return new Promise((resolve) => {
    let ended = 0;
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      if (err) onError(err);
      conn.destroy();
      if (!client.writableEnded) client.end();
      resolve();
    };
    const copy = (from: Duplex, to: Duplex) => {
      from.on('data', (chunk: Buffer) => {
        if (done || to.writableEnded || to.destroyed) return;
        if (!to.write(chunk)) {
          from.pause();
          to.once('drain', () => from.resume());
        }
      });
      from.once('end', () => {
        if (!to.writableEnded && !to.destroyed) to.end();
        if (++ended === 2) finish();
      });
    };
    conn.on('error', (err) => finish(err));
    client.on('error', () => finish());
    conn.once('close', () => finish());
    client.once('close', () => finish());
    copy(conn, client);
    copy(client, conn);
  });
}

/** Serves port-forward over WebSocket channels until the client closes it. */
export async function servePortForwardWs(ws: WebSocket, protocol: string, ports: number[], dial: PortDialer, describe: string): Promise<void> {
  const base64 = protocol.includes('base64');
  const abort = new AbortController();
  const conns: (Duplex | undefined)[] = [];
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  closed.then(() => {
    abort.abort(new Error('client went away'));
    for (const c of conns) c?.destroy();
  });
  const pending: Buffer[][] = ports.map(() => []);
  ws.on('message', (raw: Buffer, isBinary: boolean) => {
    const msg = decodeChannelMessage(raw, isBinary, base64);
    if (!msg || msg.channel % 2 !== 0) return;
    const i = msg.channel / 2;
    if (i >= ports.length) return;
    const c = conns[i];
    if (c) c.write(msg.data);
    else pending[i]!.push(msg.data);
  });
  await Promise.all(
    ports.map(async (port, i) => {
      const portBytes = Buffer.alloc(2);
      portBytes.writeUInt16LE(port);
      sendChannel(ws, 2 * i, portBytes, base64);
      sendChannel(ws, 2 * i + 1, portBytes, base64);
      let conn: Duplex;
      try {
        conn = await dial(port, abort.signal);
      } catch (err) {
        sendChannel(ws, 2 * i + 1, Buffer.from(`error forwarding port ${port} to ${describe}: ${errorText(err)}`), base64);
        return;
      }
      conns[i] = conn;
      for (const b of pending[i]!) conn.write(b);
      pending[i] = [];
      conn.on('data', (d: Buffer) => sendChannel(ws, 2 * i, d, base64));
      await new Promise<void>((resolve) => {
        conn.on('error', (err) => {
          sendChannel(ws, 2 * i + 1, Buffer.from(`error forwarding port ${port} to ${describe}: ${errorText(err)}`), base64);
          resolve();
        });
        conn.on('close', () => resolve());
      });
    }),
  );
  if (ws.readyState === ws.OPEN) ws.close(1000);
}
