/**
 * kubelet's remotecommand protocols (exec and attach) on vmlet's streaming server.
 *
 * SPDY (subprotocols v4/v3/v2.channel.k8s.io and channel.k8s.io, chosen by the client's
 * X-Stream-Protocol-Version headers): the client opens one stream per channel, named by its
 * `streamType` header (error, stdin, stdout, stderr, resize); the server accepts each, waits until
 * all expected ones are there (stderr is not expected with a tty; resize only with a tty, v3+),
 * runs the command, and ends with the result on the error stream: v4 sends a JSON metav1.Status
 * (Success, or Failure with reason NonZeroExitCode and the exit code as an ExitCode cause); older
 * versions send an error text only on failure.
 *
 * WebSocket (v5/v4.channel.k8s.io, v4.base64.channel.k8s.io, channel.k8s.io,
 * base64.channel.k8s.io): one connection, every message prefixed by its channel (0 stdin,
 * 1 stdout, 2 stderr, 3 error, 4 resize; the base64 variants send the channel as an ASCII digit
 * and the payload base64 in a text message). The server first sends an empty message on the
 * lowest channel it writes, so the client knows the session is up. v5 adds the close signal: the
 * client's message [255, channel] closes that channel (stdin EOF); before v5 stdin ends only with
 * the connection.
 */
import { EventEmitter } from 'node:events';
import { PassThrough, Writable } from 'node:stream';
import type { WebSocket } from 'ws';
import { errorText } from '../errors.js';
import type { SpdySession, SpdyStream } from './spdy/session.js';
import type { ExecOutcome, SessionIo, TerminalSize } from './types.js';

export const SPDY_REMOTECOMMAND_PROTOCOLS = ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'];
export const WS_REMOTECOMMAND_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io', 'v4.base64.channel.k8s.io', 'channel.k8s.io', 'base64.channel.k8s.io'];

export const CHANNEL = { stdin: 0, stdout: 1, stderr: 2, error: 3, resize: 4 } as const;
const WS_CLOSE_SIGNAL = 255;

export interface StreamOptions {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

/** Runs the command (exec) or the attach once the client's streams are ready. */
export type SessionRunner = (io: SessionIo) => Promise<ExecOutcome | void>;

/** What the error channel carries at the end, per protocol version. */
export function finalStatus(protocol: string, outcome: ExecOutcome | void | Error): Buffer | undefined {
  const v4 = protocol === 'v4.channel.k8s.io' || protocol === 'v5.channel.k8s.io' || protocol === 'v4.base64.channel.k8s.io';
  if (outcome instanceof Error) {
    const message = errorText(outcome);
    return Buffer.from(v4 ? JSON.stringify({ metadata: {}, status: 'Failure', message, reason: 'InternalError', code: 500 }) : message);
  }
  const code = outcome?.exitCode ?? 0;
  if (code === 0) return v4 ? Buffer.from(JSON.stringify({ metadata: {}, status: 'Success' })) : undefined;
  const message = `command terminated with non-zero exit code: exit status ${code}`;
  if (!v4) return Buffer.from(message);
  return Buffer.from(
    JSON.stringify({
      metadata: {},
      status: 'Failure',
      message,
      reason: 'NonZeroExitCode',
      details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
    }),
  );
}

/** Parses the resize channel: a stream of JSON TerminalSize objects ({"Width":80,"Height":24}). */
export class ResizeDecoder {
  private text = '';
  constructor(private readonly sink: EventEmitter) {}

  push(chunk: Buffer): void {
    this.text += chunk.toString('utf8');
    // Objects are written back to back (json.Encoder adds a newline after each).
    for (;;) {
      const end = this.text.indexOf('}');
      if (end < 0) break;
      const doc = this.text.slice(0, end + 1);
      this.text = this.text.slice(end + 1);
      try {
        const size = JSON.parse(doc.trim()) as { Width?: unknown; Height?: unknown };
        if (Number.isInteger(size.Width) && Number.isInteger(size.Height)) {
          this.sink.emit('resize', { width: size.Width as number, height: size.Height as number } satisfies TerminalSize);
        }
      } catch {
        // A malformed size is dropped, as kubelet does.
      }
    }
    if (this.text.length > 4096) this.text = '';
  }
}

/** Expected SPDY streams for these options (kubelet's v2+ rule). */
export function expectedStreamTypes(protocol: string, opts: StreamOptions): string[] {
  const types = ['error'];
  if (opts.stdin) types.push('stdin');
  if (opts.stdout) types.push('stdout');
  if (opts.stderr && !opts.tty) types.push('stderr');
  if (opts.tty && protocol !== 'v2.channel.k8s.io' && protocol !== 'channel.k8s.io') types.push('resize');
  return types;
}

/** Serves one exec/attach over a SPDY session; resolves when the session is over. */
export async function serveRemoteCommandSpdy(
  session: SpdySession,
  protocol: string,
  opts: StreamOptions,
  run: SessionRunner,
  streamCreationTimeoutMs: number,
): Promise<void> {
  const expected = new Set(expectedStreamTypes(protocol, opts));
  const streams = new Map<string, SpdyStream>();
  const abort = new AbortController();
  session.on('close', () => abort.abort(new Error('client went away')));
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for the client's streams (${[...expected].filter((t) => !streams.has(t)).join(', ')})`)), streamCreationTimeoutMs);
    const check = () => {
      if ([...expected].every((t) => streams.has(t))) {
        clearTimeout(timer);
        resolve();
      }
    };
    session.on('stream', (s: SpdyStream) => {
      const type = s.header('streamtype') ?? '';
      if (!expected.has(type) || streams.has(type)) {
        s.reset(3); // REFUSED_STREAM
        return;
      }
      streams.set(type, s);
      s.reply().catch(() => {});
      check();
    });
    session.on('close', () => {
      clearTimeout(timer);
      reject(new Error('client went away before its streams were ready'));
    });
  });
  try {
    await ready;
  } catch {
    await session.close();
    return;
  }
  const resize = new EventEmitter();
  const resizeStream = streams.get('resize');
  if (resizeStream) {
    const decoder = new ResizeDecoder(resize);
    resizeStream.on('data', (c: Buffer) => decoder.push(c));
  }
  for (const s of streams.values()) s.on('error', () => {});
  const io: SessionIo = { tty: opts.tty, resize, signal: abort.signal };
  if (streams.has('stdin')) io.stdin = streams.get('stdin');
  if (streams.has('stdout')) io.stdout = streams.get('stdout');
  if (streams.has('stderr')) io.stderr = streams.get('stderr');
  let outcome: ExecOutcome | void | Error;
  try {
    outcome = await run(io);
  } catch (err) {
    outcome = err as Error;
  }
  const status = finalStatus(protocol, outcome);
  const errorStream = streams.get('error')!;
  if (status && !errorStream.destroyed) errorStream.write(status);
  await Promise.all(
    [...streams.entries()]
      .filter(([type]) => type !== 'stdin' && type !== 'resize')
      .map(([, s]) => endWritable(s)),
  );
  await session.close();
}

function endWritable(w: Writable): Promise<void> {
  if (w.destroyed || w.writableFinished) return Promise.resolve();
  return new Promise((resolve) => {
    w.once('finish', resolve);
    w.once('close', resolve);
    w.end();
  });
}

/** A Writable that sends its bytes as WebSocket messages on one channel. */
export class WsChannelWriter extends Writable {
  constructor(
    private readonly ws: WebSocket,
    private readonly channel: number,
    private readonly base64: boolean,
  ) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    sendChannel(this.ws, this.channel, chunk, this.base64, cb);
  }
}

export function sendChannel(ws: WebSocket, channel: number, data: Buffer, base64: boolean, cb?: (err?: Error) => void): void {
  if (ws.readyState !== ws.OPEN) {
    cb?.(new Error('WebSocket is closed'));
    return;
  }
  if (base64) ws.send(String.fromCharCode(48 + channel) + data.toString('base64'), cb);
  else ws.send(Buffer.concat([Buffer.from([channel]), data]), { binary: true }, cb);
}

/** Splits a received WebSocket message into channel and payload. */
export function decodeChannelMessage(message: Buffer, isBinary: boolean, base64: boolean): { channel: number; data: Buffer } | undefined {
  if (message.length === 0) return undefined;
  if (base64 && !isBinary) {
    const channel = message[0]! - 48;
    return { channel, data: Buffer.from(message.subarray(1).toString('latin1'), 'base64') };
  }
  return { channel: message[0]!, data: message.subarray(1) };
}

/** Serves one exec/attach over an accepted WebSocket; resolves when the session is over. */
export async function serveRemoteCommandWs(ws: WebSocket, protocol: string, opts: StreamOptions, run: SessionRunner): Promise<void> {
  const base64 = protocol.includes('base64');
  const v5 = protocol === 'v5.channel.k8s.io';
  const abort = new AbortController();
  const stdin = opts.stdin ? new PassThrough() : undefined;
  const resize = new EventEmitter();
  const decoder = new ResizeDecoder(resize);
  ws.on('message', (raw: Buffer, isBinary: boolean) => {
    const msg = decodeChannelMessage(raw, isBinary, base64);
    if (!msg) return;
    if (v5 && msg.channel === WS_CLOSE_SIGNAL) {
      if (msg.data[0] === CHANNEL.stdin) stdin?.end();
      return;
    }
    if (msg.channel === CHANNEL.stdin && stdin && !stdin.writableEnded) stdin.write(msg.data);
    else if (msg.channel === CHANNEL.resize && opts.tty) decoder.push(msg.data);
  });
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  closed.then(() => {
    abort.abort(new Error('client went away'));
    if (stdin && !stdin.writableEnded) stdin.end();
  });
  const io: SessionIo = { tty: opts.tty, resize, signal: abort.signal };
  if (stdin) io.stdin = stdin;
  if (opts.stdout) io.stdout = new WsChannelWriter(ws, CHANNEL.stdout, base64);
  if (opts.stderr && !opts.tty) io.stderr = new WsChannelWriter(ws, CHANNEL.stderr, base64);
  io.stdout?.on('error', () => {});
  io.stderr?.on('error', () => {});
  // The first message tells the client the session is up.
  const first = opts.stdout ? CHANNEL.stdout : opts.stderr ? CHANNEL.stderr : CHANNEL.error;
  sendChannel(ws, first, Buffer.alloc(0), base64);
  let outcome: ExecOutcome | void | Error;
  try {
    outcome = await run(io);
  } catch (err) {
    outcome = err as Error;
  }
  await Promise.all([io.stdout, io.stderr].filter((w): w is Writable => w !== undefined).map(endWritable));
  const status = finalStatus(protocol, outcome);
  if (status) await new Promise<void>((resolve) => sendChannel(ws, CHANNEL.error, status, base64, () => resolve()));
  if (ws.readyState === ws.OPEN) ws.close(1000);
  await Promise.race([closed, new Promise((r) => setTimeout(r, 5000).unref())]);
  if (ws.readyState !== ws.CLOSED) ws.terminate();
}
