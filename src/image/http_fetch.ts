import http from 'node:http';
import tls from 'node:tls';
import { isIP, type Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { open, unlink } from 'node:fs/promises';
import {
  CancelledError,
  DeadlineExceededError,
  FailedPreconditionError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
  VmletError,
  errorText,
} from '../errors.js';
import type { TransportProfile } from './translate.js';
import { BatchedFileWriter } from './batched_file.js';

/**
 * Downloads one http(s) URL into a new file while hashing it, with node:http/node:tls directly:
 * redirects (bounded), a whole-download deadline, a stall timeout, a proxy (absolute-form
 * requests for http, a CONNECT tunnel for https), extra CAs, client certificates and `insecure`.
 */

export interface DownloadOptions {
  transport: TransportProfile;
  signal?: AbortSignal;
  /** Give up when no byte (or response) arrives for this long. */
  stallTimeoutMs: number;
  /** Refuse bodies larger than this (announced or received): ResourceExhaustedError. */
  maxBytes?: number;
  /** How the limit is named in messages (e.g. the flag that sets it). */
  maxBytesName?: string;
  /** Free bytes where the file goes: a larger Content-Length is refused before anything is written. */
  freeBytes?: () => Promise<number>;
  /** Validators of a copy we already have; a 304 answer then yields `notModified`. */
  conditional?: { etag?: string; lastModified?: string };
  onProgress?: (receivedBytes: number, totalBytes: number | undefined) => void;
}

export type DownloadResult =
  | { notModified: true; finalUrl: string }
  | { notModified: false; sha256: string; size: number; finalUrl: string; etag?: string; lastModified?: string };

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const VALIDATOR_RE = /^[\x20-\x7e]{1,256}$/;

/** The URL with any password hidden, for logs, messages and records. */
export function redactUrl(url: string | URL): string {
  try {
    const u = new URL(url.toString());
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '<unparsable URL>';
  }
}

function bareHost(hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
}

function portOf(u: URL): number {
  if (u.port !== '') return Number(u.port);
  return u.protocol === 'https:' ? 443 : 80;
}

function basicAuth(u: URL): string | undefined {
  if (u.username === '' && u.password === '') return undefined;
  const cred = `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`;
  return `Basic ${Buffer.from(cred).toString('base64')}`;
}

function statusError(status: number, statusMessage: string | undefined, url: URL): VmletError {
  const text = `${redactUrl(url)} answered HTTP ${status}${statusMessage ? ` ${statusMessage}` : ''}`;
  if (status === 404 || status === 410) return new NotFoundError(text);
  if (status === 429 || status >= 500) return new UnavailableError(text);
  return new FailedPreconditionError(text);
}

function tlsOptions(url: URL, transport: TransportProfile): tls.ConnectionOptions {
  const host = bareHost(url.hostname);
  const t = transport.tls;
  const opts: tls.ConnectionOptions = {
    host,
    port: portOf(url),
    rejectUnauthorized: !(t?.insecure ?? false),
    ALPNProtocols: ['http/1.1'],
  };
  // SNI carries DNS names only; identity checks use servername, else host (which covers IPs).
  const servername = t?.serverName ?? (isIP(host) === 0 ? host : undefined);
  if (servername !== undefined) opts.servername = servername;
  if (t && t.caCertificates.length > 0) opts.ca = [...tls.rootCertificates, ...t.caCertificates];
  if (t && t.clientCertificates.length > 0) {
    opts.cert = t.clientCertificates.map((c) => c.cert);
    opts.key = t.clientCertificates.map((c) => c.key);
  }
  return opts;
}

/** Opens a CONNECT tunnel to url's host through an http proxy. */
function connectTunnel(proxy: URL, target: URL, signal: AbortSignal): Promise<Socket> {
  const authority = `${target.hostname}:${portOf(target)}`;
  const headers: http.OutgoingHttpHeaders = { host: authority };
  const auth = basicAuth(proxy);
  if (auth) headers['proxy-authorization'] = auth;
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: bareHost(proxy.hostname),
      port: portOf(proxy),
      method: 'CONNECT',
      path: authority,
      headers,
      agent: false,
      signal,
    });
    req.once('connect', (res, socket, head) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        reject(new UnavailableError(`proxy ${redactUrl(proxy)} refused CONNECT ${authority}: HTTP ${res.statusCode}`));
        return;
      }
      if (head.length > 0) socket.unshift(head);
      resolve(socket);
    });
    req.once('response', (res) => {
      res.resume();
      reject(new UnavailableError(`proxy ${redactUrl(proxy)} answered CONNECT ${authority} with HTTP ${res.statusCode}`));
    });
    req.once('error', reject);
    req.end();
  });
}

function sendGet(options: http.RequestOptions): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...options, method: 'GET' });
    req.once('response', resolve);
    req.once('error', reject);
    req.end();
  });
}

async function request(
  url: URL,
  transport: TransportProfile,
  signal: AbortSignal,
  extraHeaders: http.OutgoingHttpHeaders,
): Promise<http.IncomingMessage> {
  const headers: http.OutgoingHttpHeaders = {
    host: url.host,
    'user-agent': 'vmlet',
    accept: '*/*',
    'accept-encoding': 'identity',
    ...extraHeaders,
  };
  const originPath = `${url.pathname}${url.search}`;
  const proxy = transport.proxy ? new URL(transport.proxy) : undefined;
  if (url.protocol === 'http:') {
    if (proxy) {
      const auth = basicAuth(proxy);
      if (auth) headers['proxy-authorization'] = auth;
      // Absolute-form request target (RFC 9112 3.2.2), without userinfo or fragment.
      const absolute = `${url.protocol}//${url.host}${originPath}`;
      return sendGet({ host: bareHost(proxy.hostname), port: portOf(proxy), path: absolute, headers, agent: false, signal });
    }
    return sendGet({ host: bareHost(url.hostname), port: portOf(url), path: originPath, headers, agent: false, signal });
  }
  const tlsOpts = tlsOptions(url, transport);
  if (proxy) {
    const socket = await connectTunnel(proxy, url, signal);
    return sendGet({ path: originPath, headers, signal, createConnection: () => tls.connect({ ...tlsOpts, socket }) });
  }
  return sendGet({ path: originPath, headers, signal, createConnection: () => tls.connect(tlsOpts) });
}

/**
 * Downloads `url` into `destPath` (created exclusively). On any failure the partial file is
 * removed before the error is thrown: CancelledError for the caller's signal, DeadlineExceededError
 * for the deadline or a stall, NotFoundError for 404/410, UnavailableError for network trouble and
 * 5xx, FailedPreconditionError for other answers (too many redirects, 403, an encoded body, …).
 */
export async function downloadToFile(url: string, destPath: string, opts: DownloadOptions): Promise<DownloadResult> {
  const { transport } = opts;
  const ctl = new AbortController();
  let activeResponse: http.IncomingMessage | undefined;
  const abort = (reason: VmletError): void => {
    if (ctl.signal.aborted) return;
    ctl.abort(reason);
    activeResponse?.destroy(reason);
  };
  const onCallerAbort = (): void => abort(new CancelledError(`download of ${redactUrl(url)} cancelled`));
  if (opts.signal?.aborted) onCallerAbort();
  else opts.signal?.addEventListener('abort', onCallerAbort, { once: true });

  let deadline: NodeJS.Timeout | undefined;
  if (transport.timeoutMs > 0) {
    deadline = setTimeout(
      () => abort(new DeadlineExceededError(`download of ${redactUrl(url)} took longer than ${transport.timeoutMs} ms`)),
      transport.timeoutMs,
    );
  }
  let stall: NodeJS.Timeout | undefined;
  const kick = (): void => {
    clearTimeout(stall);
    stall = setTimeout(
      () => abort(new DeadlineExceededError(`no data from ${redactUrl(url)} for ${opts.stallTimeoutMs} ms`)),
      opts.stallTimeoutMs,
    );
  };

  let fileCreated = false;
  try {
    kick();
    const origin = new URL(url);
    let current = origin;
    let redirects = 0;
    for (;;) {
      if (ctl.signal.aborted) throw ctl.signal.reason;
      const headers: http.OutgoingHttpHeaders = {};
      // Credentials from the URL go to its own origin only, never to a redirect target elsewhere.
      const auth = current.origin === origin.origin ? basicAuth(origin) : undefined;
      if (auth) headers.authorization = auth;
      if (opts.conditional?.etag) headers['if-none-match'] = opts.conditional.etag;
      if (opts.conditional?.lastModified) headers['if-modified-since'] = opts.conditional.lastModified;

      const res = await request(current, transport, ctl.signal, headers);
      activeResponse = res;
      kick();
      const status = res.statusCode ?? 0;
      if (REDIRECT_STATUSES.has(status)) {
        res.destroy();
        const location = res.headers.location;
        if (!location) throw new UnavailableError(`${redactUrl(current)} answered HTTP ${status} without a Location`);
        if (redirects >= transport.maxRedirects) {
          throw new FailedPreconditionError(
            `${redactUrl(url)}: stopped after ${redirects} redirect(s), the limit is ${transport.maxRedirects}`,
          );
        }
        redirects++;
        let next: URL;
        try {
          next = new URL(location, current);
        } catch {
          throw new UnavailableError(`${redactUrl(current)} redirected to an unparsable Location`);
        }
        if (next.protocol !== 'http:' && next.protocol !== 'https:') {
          throw new FailedPreconditionError(`${redactUrl(current)} redirected to a ${next.protocol} URL, which is not allowed`);
        }
        current = next;
        continue;
      }
      if (status === 304 && opts.conditional) {
        res.destroy();
        return { notModified: true, finalUrl: redactUrl(current) };
      }
      if (status !== 200) {
        res.destroy();
        throw statusError(status, res.statusMessage, current);
      }
      const encoding = res.headers['content-encoding'];
      if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
        res.destroy();
        throw new FailedPreconditionError(`${redactUrl(current)} sent a ${encoding}-encoded body, which vmlet does not decode`);
      }
      const lengthHeader = res.headers['content-length'];
      const total = lengthHeader !== undefined && /^[0-9]+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
      const limitName = opts.maxBytesName ?? 'the size limit';
      if (opts.maxBytes !== undefined && total !== undefined && total > opts.maxBytes) {
        res.destroy();
        throw new ResourceExhaustedError(`${redactUrl(current)} announces ${total} bytes, more than ${limitName} of ${opts.maxBytes} bytes`);
      }
      if (total !== undefined && opts.freeBytes) {
        const free = await opts.freeBytes();
        if (total > free) {
          res.destroy();
          throw new ResourceExhaustedError(`${redactUrl(current)} announces ${total} bytes, more than the ${free} bytes free in the image directory`);
        }
      }

      const fh = await open(destPath, 'wx', 0o600);
      fileCreated = true;
      // Chunks are hashed here as they arrive and go to the file in large vectored writes while
      // more arrive; no byte is copied in user space (see BatchedFileWriter). Measured on a loaded
      // 2-core machine this costs less CPU per GiB, and so less time, than hashing in a worker
      // over a shared ring (bench/README.md, "pull").
      const file = new BatchedFileWriter(fh);
      const hash = createHash('sha256');
      let received = 0;
      try {
        for await (const chunk of res as AsyncIterable<Buffer>) {
          received += chunk.length;
          if (opts.maxBytes !== undefined && received > opts.maxBytes) {
            throw new ResourceExhaustedError(`${redactUrl(current)} sent more than ${limitName} of ${opts.maxBytes} bytes`);
          }
          hash.update(chunk);
          const wait = file.append(chunk);
          if (wait) await wait;
          kick();
          opts.onProgress?.(received, total);
        }
        if (ctl.signal.aborted) throw ctl.signal.reason;
        if (total !== undefined && received !== total) {
          throw new UnavailableError(`${redactUrl(current)} ended after ${received} of ${total} bytes`);
        }
        await file.finish();
      } finally {
        // No write may still be in flight when the file is closed (and unlinked on failure).
        await file.settled();
        await fh.close();
      }
      const result: DownloadResult = { notModified: false, sha256: hash.digest('hex'), size: received, finalUrl: redactUrl(current) };
      // Validators are sent back on the next pull and stored in the index: keep only sane ones.
      const etag = res.headers.etag;
      const lastModified = res.headers['last-modified'];
      if (etag !== undefined && VALIDATOR_RE.test(etag)) result.etag = etag;
      if (lastModified !== undefined && VALIDATOR_RE.test(lastModified)) result.lastModified = lastModified;
      return result;
    }
  } catch (err) {
    if (fileCreated) await unlink(destPath).catch(() => {});
    // Whatever the socket reported, a deadline or cancel is the real reason.
    if (ctl.signal.aborted) throw ctl.signal.reason;
    if (err instanceof VmletError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') {
      throw new ResourceExhaustedError(`no space left in the image directory while downloading ${redactUrl(url)}`, { cause: err });
    }
    throw new UnavailableError(`cannot download ${redactUrl(url)}: ${errorText(err)}`, { cause: err });
  } finally {
    clearTimeout(deadline);
    clearTimeout(stall);
    opts.signal?.removeEventListener('abort', onCallerAbort);
    activeResponse?.destroy();
  }
}
