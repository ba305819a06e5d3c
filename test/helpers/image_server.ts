/**
 * Test servers for the image store, all on 127.0.0.1: one route table served over HTTP and over
 * HTTPS (certificate from a CA made with openssl at start-up), plus an HTTP proxy that forwards
 * absolute-form requests and tunnels CONNECT. Also makes disk images with qemu-img.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const run = promisify(execFile);

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export interface TestCa {
  caPem: string;
  certPem: string;
  keyPem: string;
  /** A client certificate signed by the same CA, for mutual TLS. */
  clientCertPem: string;
  clientKeyPem: string;
}

/** A CA and a server certificate for 127.0.0.1/localhost, made with openssl in a temp dir that is removed again. */
export async function makeTestCa(): Promise<TestCa> {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-test-ca-'));
  try {
    const p = (f: string): string => join(dir, f);
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    await run('openssl', ['req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '2', '-subj', '/CN=vmlet test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    await run('openssl', ['req', ...ec, '-keyout', p('srv.key'), '-out', p('srv.csr'), '-subj', '/CN=vmlet test server']);
    await writeFile(p('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
    await run('openssl', ['x509', '-req', '-in', p('srv.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial',
      '-out', p('srv.pem'), '-days', '2', '-extfile', p('ext.cnf')]);
    await run('openssl', ['req', ...ec, '-keyout', p('cli.key'), '-out', p('cli.csr'), '-subj', '/CN=vmlet test client']);
    await writeFile(p('cli.cnf'), 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n');
    await run('openssl', ['x509', '-req', '-in', p('cli.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial',
      '-out', p('cli.pem'), '-days', '2', '-extfile', p('cli.cnf')]);
    return {
      caPem: await readFile(p('ca.pem'), 'utf8'),
      certPem: await readFile(p('srv.pem'), 'utf8'),
      keyPem: await readFile(p('srv.key'), 'utf8'),
      clientCertPem: await readFile(p('cli.pem'), 'utf8'),
      clientKeyPem: await readFile(p('cli.key'), 'utf8'),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

/** Keeps every socket so close() can end hanging responses too. */
function trackSockets(server: net.Server): Set<net.Socket> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  return sockets;
}

async function closeServer(server: net.Server, sockets: Set<net.Socket>): Promise<void> {
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

export interface ImageServer {
  httpBase: string;
  httpsBase: string;
  /** HTTPS that demands a client certificate signed by `ca`. */
  mtlsBase: string;
  ca: TestCa;
  /** Requests per path (both servers). */
  hits: Map<string, number>;
  route(path: string, handler: Handler): void;
  close(): Promise<void>;
}

export async function startImageServer(): Promise<ImageServer> {
  const routes = new Map<string, Handler>();
  const hits = new Map<string, number>();
  const handle: Handler = (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const h = routes.get(path);
    if (h) h(req, res);
    else {
      res.writeHead(404, { 'content-type': 'text/html' });
      res.end('<html><body>404 Not Found</body></html>\n');
    }
  };
  const ca = await makeTestCa();
  const plain = http.createServer(handle);
  const secure = https.createServer({ cert: ca.certPem, key: ca.keyPem }, handle);
  const mutual = https.createServer({ cert: ca.certPem, key: ca.keyPem, ca: ca.caPem, requestCert: true, rejectUnauthorized: true }, handle);
  const plainSockets = trackSockets(plain);
  const secureSockets = trackSockets(secure);
  const mutualSockets = trackSockets(mutual);
  const httpPort = await listen(plain);
  const httpsPort = await listen(secure);
  const mtlsPort = await listen(mutual);
  return {
    httpBase: `http://127.0.0.1:${httpPort}`,
    httpsBase: `https://127.0.0.1:${httpsPort}`,
    mtlsBase: `https://127.0.0.1:${mtlsPort}`,
    ca,
    hits,
    route: (path, handler) => routes.set(path, handler),
    close: async () => {
      await closeServer(plain, plainSockets);
      await closeServer(secure, secureSockets);
      await closeServer(mutual, mutualSockets);
    },
  };
}

// ---- handlers ----

/** Serves `body` with Content-Length and an ETag, answering If-None-Match with 304. */
export function serveBody(body: Buffer, opts: { etag?: boolean; contentType?: string } = {}): Handler {
  const etag = `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`;
  return (req, res) => {
    if (opts.etag && req.headers['if-none-match'] === etag) {
      res.writeHead(304, { etag });
      res.end();
      return;
    }
    const headers: http.OutgoingHttpHeaders = { 'content-type': opts.contentType ?? 'application/octet-stream', 'content-length': body.length };
    if (opts.etag) headers.etag = etag;
    res.writeHead(200, headers);
    res.end(body);
  };
}

export function redirectTo(location: string, status = 302): Handler {
  return (_req, res) => {
    res.writeHead(status, { location });
    res.end();
  };
}

/** Sends `body` in `chunkBytes` pieces, `delayMs` apart. */
export function serveSlowly(body: Buffer, chunkBytes: number, delayMs: number): Handler {
  return (req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    let off = 0;
    const timer = setInterval(() => {
      if (res.destroyed) {
        clearInterval(timer);
        return;
      }
      const end = Math.min(off + chunkBytes, body.length);
      res.write(body.subarray(off, end));
      off = end;
      if (off >= body.length) {
        clearInterval(timer);
        res.end();
      }
    }, delayMs);
    req.socket.once('close', () => clearInterval(timer));
  };
}

/** Sends headers promising `length` bytes, then `sentBytes` of them, then nothing (until close). */
export function hangAfter(length: number, sentBytes: number): Handler {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': length });
    res.write(Buffer.alloc(sentBytes, 1));
  };
}

/** Sends headers and part of the body, then drops the connection. */
export function dropAfter(body: Buffer, sentBytes: number): Handler {
  return (req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.write(body.subarray(0, sentBytes), () => req.socket.destroy());
  };
}

// ---- proxy ----

export interface TestProxy {
  url: string;
  /** Absolute-form request targets seen. */
  forwarded: string[];
  /** CONNECT authorities seen. */
  tunnels: string[];
  close(): Promise<void>;
}

export async function startProxy(): Promise<TestProxy> {
  const forwarded: string[] = [];
  const tunnels: string[] = [];
  const server = http.createServer((req, res) => {
    const target = req.url ?? '';
    forwarded.push(target);
    let u: URL;
    try {
      u = new URL(target);
    } catch {
      res.writeHead(400);
      res.end('proxy needs an absolute-form target');
      return;
    }
    const upstream = http.request(
      { host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, method: req.method, headers: { ...req.headers, host: u.host }, agent: false },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    const authority = req.url ?? '';
    tunnels.push(authority);
    const [host, port] = [authority.slice(0, authority.lastIndexOf(':')), Number(authority.slice(authority.lastIndexOf(':') + 1))];
    const upstream = net.connect(port, host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  const sockets = trackSockets(server);
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}`, forwarded, tunnels, close: () => closeServer(server, sockets) };
}

// ---- disk images ----

/** A qcow2 image of `virtualSize` bytes, returned as its bytes (the file is removed). */
export async function makeQcow2(virtualSize: number, opts: { backingFile?: string } = {}): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-test-img-'));
  try {
    const path = join(dir, 'disk.qcow2');
    const args = ['create', '-q', '-f', 'qcow2'];
    if (opts.backingFile) args.push('-u', '-b', opts.backingFile, '-F', 'raw');
    args.push(path, String(virtualSize));
    await run('qemu-img', args);
    return await readFile(path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A raw image of `size` bytes (a multiple of 512) with a boot-sector signature and a marker. */
export function makeRaw(size: number, marker = 'vmlet'): Buffer {
  const b = Buffer.alloc(size);
  b.write(marker, 3);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

export function sha256Hex(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
