/**
 * vmlet's streaming server, as kubelet's (k8s.io/kubelet/pkg/cri/streaming) and containerd's
 * stream server: Exec, Attach and PortForward answer with a URL on this HTTP server that carries a
 * one-time token (tokens.ts); the client (kubelet, crictl) upgrades that request to SPDY/3.1 or
 * to a WebSocket and speaks the remotecommand or port-forward protocol (remotecommand.ts,
 * portforward.ts). Plain HTTP requests, unknown or reused or expired tokens, and protocols the
 * client and vmlet do not share are refused before anything runs.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer, createWebSocketStream, type WebSocket } from 'ws';
import { InvalidArgumentError, errorText } from '../errors.js';
import type { Logger } from '../log.js';
import { SpdySession } from './spdy/session.js';
import { TokenCache, TOKEN_PATTERN, DEFAULT_TOKEN_TTL_MS } from './tokens.js';
import {
  SPDY_REMOTECOMMAND_PROTOCOLS,
  WS_REMOTECOMMAND_PROTOCOLS,
  serveRemoteCommandSpdy,
  serveRemoteCommandWs,
  type SessionRunner,
  type StreamOptions,
} from './remotecommand.js';
import {
  SPDY_PORTFORWARD_PROTOCOL,
  WS_PORTFORWARD_PROTOCOLS,
  WS_TUNNEL_PORTFORWARD_PROTOCOL,
  parsePort,
  servePortForwardSpdy,
  servePortForwardWs,
  type PortDialer,
} from './portforward.js';
import type { StreamRequest, StreamingRuntime } from './types.js';

/** kubelet's default: the client must open its streams within 30 s of the upgrade. */
export const DEFAULT_STREAM_CREATION_TIMEOUT_MS = 30_000;

export interface StreamingServerOptions {
  /** host:port to listen on; port 0 picks a free one. */
  address: string;
  runtime: StreamingRuntime;
  logger: Logger;
  tokenTtlMs?: number;
  streamCreationTimeoutMs?: number;
}

/** Splits "host:port" / "[v6]:port"; throws InvalidArgumentError otherwise. */
export function parseListenAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):([0-9]{1,5})$/.exec(address);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new InvalidArgumentError(`stream address ${JSON.stringify(address)} is not host:port`);
  return { host: m[1] ?? m[2]!, port };
}

/** The first server protocol the client offered ('' when the client offered none). */
export function negotiate(clientProtocols: string[], serverProtocols: string[]): string | undefined {
  if (clientProtocols.length === 0) return '';
  return serverProtocols.find((p) => clientProtocols.includes(p));
}

function headerList(value: string | string[] | undefined): string[] {
  const parts = Array.isArray(value) ? value : value ? [value] : [];
  return parts.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v.length > 0);
}

export class StreamingServer {
  private readonly tokens: TokenCache<StreamRequest>;
  private readonly http = http.createServer((req, res) => this.onPlainRequest(req, res));
  private readonly wss = new WebSocketServer({ noServer: true, handleProtocols: (protocols, req) => this.pickWsProtocol(protocols, req) });
  /**
   * ws accepts only RFC 7230 tokens as subprotocols, and '/' is not one: the tunnel's name is
   * swapped for this alias on the way in and back in the 101 response.
   */
  private static readonly TUNNEL_ALIAS = 'vmlet.spdy-tunnel.portforward.k8s.io';
  private readonly sockets = new Set<Duplex>();
  private baseUrl = '';

  constructor(private readonly options: StreamingServerOptions) {
    this.tokens = new TokenCache<StreamRequest>(options.tokenTtlMs ?? DEFAULT_TOKEN_TTL_MS);
    this.http.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket as Socket, head));
    this.wss.on('headers', (headers: string[]) => {
      const i = headers.findIndex((h) => h.toLowerCase() === `sec-websocket-protocol: ${StreamingServer.TUNNEL_ALIAS}`);
      if (i >= 0) headers[i] = `Sec-WebSocket-Protocol: ${WS_TUNNEL_PORTFORWARD_PROTOCOL}`;
    });
    this.http.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  async start(): Promise<void> {
    const { host, port } = parseListenAddress(this.options.address);
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    const bound = this.http.address() as AddressInfo;
    const shownHost = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
    this.baseUrl = `http://${shownHost}:${bound.port}`;
    this.options.logger.info({ url: this.baseUrl }, 'streaming server listening');
  }

  get url(): string {
    return this.baseUrl;
  }

  /** Keeps `request` under a new token and returns the URL the client must use. */
  urlFor(request: StreamRequest): string {
    if (!this.baseUrl) throw new InvalidArgumentError('the streaming server is not running');
    return `${this.baseUrl}/${request.kind}/${this.tokens.insert(request)}`;
  }

  async stop(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
    this.wss.close();
  }

  private route(req: http.IncomingMessage): { kind: StreamRequest['kind']; token: string; query: URLSearchParams } | undefined {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const m = /^\/(exec|attach|portforward)\/([^/]+)$/.exec(url.pathname);
    if (!m || !TOKEN_PATTERN.test(m[2]!)) return undefined;
    return { kind: m[1] as StreamRequest['kind'], token: m[2]!, query: url.searchParams };
  }

  private onPlainRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const route = this.route(req);
    const status = route ? 400 : 404;
    res.writeHead(status, { 'Content-Type': 'text/plain' });
    res.end(route ? 'a streaming request must upgrade the connection (SPDY/3.1 or WebSocket)\n' : 'not found\n');
  }

  private onUpgrade(req: http.IncomingMessage, socket: Socket, head: Buffer): void {
    socket.on('error', () => {});
    const route = this.route(req);
    const request = route ? this.tokens.consume(route.token) : undefined;
    if (!route || !request || request.kind !== route.kind) {
      return refuse(socket, 404, 'Not Found', `unknown, used or expired streaming token\n`);
    }
    const upgrade = (req.headers.upgrade ?? '').toLowerCase();
    if (upgrade === 'websocket') {
      (req as RequestWithStream).vmletRequest = request;
      const offered = req.headers['sec-websocket-protocol'];
      if (offered) req.headers['sec-websocket-protocol'] = offered.split(',').map((p) => (p.trim() === WS_TUNNEL_PORTFORWARD_PROTOCOL ? StreamingServer.TUNNEL_ALIAS : p.trim())).join(', ');
      this.wss.handleUpgrade(req, socket, head, (ws) => this.onWebSocket(ws, req, request, route.query));
      return;
    }
    if (upgrade !== 'spdy/3.1') return refuse(socket, 400, 'Bad Request', `unsupported upgrade ${JSON.stringify(req.headers.upgrade ?? '')}\n`);
    const serverProtocols = request.kind === 'portforward' ? [SPDY_PORTFORWARD_PROTOCOL] : SPDY_REMOTECOMMAND_PROTOCOLS;
    const clientProtocols = headerList(req.headers['x-stream-protocol-version']);
    const protocol = negotiate(clientProtocols, serverProtocols);
    if (protocol === undefined || (request.kind === 'portforward' && protocol === '')) {
      return refuse(
        socket,
        403,
        'Forbidden',
        `unable to upgrade: unable to negotiate protocol: client supports [${clientProtocols.join(' ')}], server supports [${serverProtocols.join(' ')}]\n`,
        { 'X-Accepted-Stream-Protocol-Versions': serverProtocols.join(', ') },
      );
    }
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n' +
        (protocol ? `X-Stream-Protocol-Version: ${protocol}\r\n` : '') +
        '\r\n',
    );
    socket.setNoDelay(true);
    const session = new SpdySession(socket, { role: 'server', head });
    session.on('protocolError', (err: Error) => this.options.logger.debug({ err: errorText(err) }, 'SPDY protocol error'));
    const timeout = this.options.streamCreationTimeoutMs ?? DEFAULT_STREAM_CREATION_TIMEOUT_MS;
    const log = this.options.logger.child({ stream: request.kind, protocol: protocol || 'legacy', transport: 'spdy' });
    log.debug('streaming session started');
    let served: Promise<void>;
    if (request.kind === 'portforward') {
      served = servePortForwardSpdy(session, this.dialer(request.sandboxId), `pod sandbox ${request.sandboxId}`, timeout);
    } else {
      served = serveRemoteCommandSpdy(session, protocol || 'channel.k8s.io', streamOptions(request), this.runner(request), timeout);
    }
    served.then(
      () => log.debug('streaming session ended'),
      (err: unknown) => log.warn({ err: errorText(err) }, 'streaming session failed'),
    );
  }

  private pickWsProtocol(offered: Set<string>, req: http.IncomingMessage): string | false {
    const request = (req as RequestWithStream).vmletRequest;
    const supported =
      request?.kind === 'portforward' ? [StreamingServer.TUNNEL_ALIAS, ...WS_PORTFORWARD_PROTOCOLS] : WS_REMOTECOMMAND_PROTOCOLS;
    return supported.find((p) => offered.has(p)) ?? false;
  }

  private onWebSocket(ws: WebSocket, req: http.IncomingMessage, request: StreamRequest, query: URLSearchParams): void {
    ws.on('error', () => {});
    const protocol = ws.protocol || '';
    const log = this.options.logger.child({ stream: request.kind, protocol: protocol || 'none', transport: 'websocket' });
    let served: Promise<void>;
    if (request.kind === 'portforward') {
      const dial = this.dialer(request.sandboxId);
      const describe = `pod sandbox ${request.sandboxId}`;
      if (protocol === StreamingServer.TUNNEL_ALIAS) {
        const session = new SpdySession(createWebSocketStream(ws), { role: 'server' });
        served = servePortForwardSpdy(session, dial, describe, this.options.streamCreationTimeoutMs ?? DEFAULT_STREAM_CREATION_TIMEOUT_MS);
      } else {
        const fromQuery = query.getAll('port').flatMap((p) => p.split(','));
        const ports = (fromQuery.length > 0 ? fromQuery.map((p) => parsePort(p.trim())) : request.ports) as (number | undefined)[];
        if (ports.length === 0 || ports.some((p) => p === undefined)) {
          ws.close(1008, 'a valid port query parameter is required');
          return;
        }
        served = servePortForwardWs(ws, protocol, ports as number[], dial, describe);
      }
    } else {
      served = serveRemoteCommandWs(ws, protocol || 'channel.k8s.io', streamOptions(request), this.runner(request));
    }
    void req;
    served.then(
      () => log.debug('streaming session ended'),
      (err: unknown) => log.warn({ err: errorText(err) }, 'streaming session failed'),
    );
  }

  private runner(request: Exclude<StreamRequest, { kind: 'portforward' }>): SessionRunner {
    const runtime = this.options.runtime;
    return request.kind === 'exec'
      ? (io) => runtime.exec(request.containerId, request.cmd, io)
      : (io) => runtime.attach(request.containerId, io);
  }

  private dialer(sandboxId: string): PortDialer {
    return (port, signal) => this.options.runtime.portForward(sandboxId, port, signal);
  }
}

interface RequestWithStream extends http.IncomingMessage {
  vmletRequest?: StreamRequest;
}

function streamOptions(r: Exclude<StreamRequest, { kind: 'portforward' }>): StreamOptions {
  return { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: r.tty };
}

function refuse(socket: Duplex, code: number, reason: string, body: string, headers: Record<string, string> = {}): void {
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  socket.end(`HTTP/1.1 ${code} ${reason}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n${extra}\r\n${body}`);
}
