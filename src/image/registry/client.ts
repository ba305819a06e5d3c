import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { isIP } from 'node:net';
import {
  DeadlineExceededError,
  FailedPreconditionError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
  VmletError,
  errorText,
} from '../../errors.js';
import { basicAuthorization, parseChallenges, pullScope, type RegistryCredentials } from './auth.js';
import type { Capability, RegistryEndpoint } from './hosts.js';

/**
 * The OCI distribution API as far as a pull needs it, with node:http/https directly: manifests
 * and blobs by path under each endpoint, mirrors first; 401 answers handled by the challenge
 * (Bearer token from the realm, or Basic); redirects for blobs (credentials dropped across
 * origins); a stall timeout on every socket; the caller's signal cancels everything.
 */

export interface RegistryClientOptions {
  /** Registry host as named in the image (`host[:port]`), for messages. */
  registry: string;
  repository: string;
  endpoints: RegistryEndpoint[];
  /** From the pull's AuthConfig; sent to the registry's own server, never to mirrors. */
  credentials?: RegistryCredentials;
  signal: AbortSignal;
  stallTimeoutMs: number;
}

export interface Fetched {
  body: Buffer;
  contentType: string;
  endpoint: RegistryEndpoint;
}

const MAX_REDIRECTS = 5;
const MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024;
const MAX_ERROR_BODY_BYTES = 4096;

function bareHost(hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
}

/** True for errors that say the server at an https URL does not speak TLS. */
function notTls(err: unknown): boolean {
  const e = err as NodeJS.ErrnoException & { reason?: string };
  return e?.code === 'EPROTO' || e?.code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number|packet length too long/i.test(String(e?.message));
}

export class RegistryClient {
  private readonly authorization = new Map<string, string>();

  constructor(private readonly opts: RegistryClientOptions) {}

  private where(endpoint: RegistryEndpoint): string {
    return endpoint.mirror ? `mirror ${endpoint.origin} of ${this.opts.registry}` : `registry ${endpoint.origin}`;
  }

  /** One request, no redirects or auth: resolves with the response head. */
  private send(url: URL, endpoint: RegistryEndpoint, method: string, headers: http.OutgoingHttpHeaders, body?: Buffer): Promise<http.IncomingMessage> {
    const { signal, stallTimeoutMs } = this.opts;
    return new Promise((resolve, reject) => {
      const common: http.RequestOptions = {
        method,
        host: bareHost(url.hostname),
        port: url.port === '' ? undefined : Number(url.port),
        path: `${url.pathname}${url.search}`,
        headers: { 'user-agent': 'vmlet', 'accept-encoding': 'identity', ...headers },
        agent: false,
        signal,
      };
      let req: http.ClientRequest;
      if (url.protocol === 'https:') {
        const host = bareHost(url.hostname);
        const sameOrigin = url.origin === endpoint.origin;
        const t = endpoint.tls;
        const tlsOpts: https.RequestOptions = {
          ...common,
          rejectUnauthorized: !(sameOrigin && t.skipVerify),
        };
        if (isIP(host) === 0) tlsOpts.servername = host;
        if (t.ca.length > 0) tlsOpts.ca = [...tls.rootCertificates, ...t.ca];
        if (sameOrigin && t.client.length > 0) {
          tlsOpts.cert = t.client.map((c) => c.cert);
          tlsOpts.key = t.client.map((c) => c.key);
        }
        req = https.request(tlsOpts);
      } else {
        req = http.request(common);
      }
      req.setTimeout(stallTimeoutMs, () => req.destroy(new DeadlineExceededError(`no answer from ${url.origin} for ${stallTimeoutMs} ms`)));
      req.once('response', (res) => {
        // The same idle limit guards the body, read later by the caller.
        res.setTimeout(stallTimeoutMs, () => res.destroy(new DeadlineExceededError(`no data from ${url.origin} for ${stallTimeoutMs} ms`)));
        resolve(res);
      });
      req.once('error', reject);
      req.end(body);
    });
  }

  /** A request that follows redirects (bounded), switching to http for a loopback server that does not speak TLS. */
  private async sendFollowing(endpoint: RegistryEndpoint, path: string, headers: http.OutgoingHttpHeaders): Promise<http.IncomingMessage> {
    let url = new URL(`${endpoint.origin}${path}`);
    for (let redirects = 0; ; redirects++) {
      const sameOrigin = url.origin === endpoint.origin;
      const h: http.OutgoingHttpHeaders = sameOrigin ? headers : { accept: headers.accept };
      let res: http.IncomingMessage;
      try {
        res = await this.send(url, endpoint, 'GET', h);
      } catch (err) {
        if (sameOrigin && endpoint.httpFallback && url.protocol === 'https:' && notTls(err) && !this.opts.signal.aborted) {
          // containerd's behaviour for localhost registries: plain http when TLS is not spoken.
          endpoint.origin = endpoint.origin.replace(/^https:/, 'http:');
          endpoint.httpFallback = false;
          url = new URL(`${endpoint.origin}${path}`);
          continue;
        }
        throw err;
      }
      const status = res.statusCode ?? 0;
      if ([301, 302, 303, 307, 308].includes(status)) {
        res.resume();
        const location = res.headers.location;
        if (!location) throw new UnavailableError(`${this.where(endpoint)} answered HTTP ${status} without a Location`);
        if (redirects >= MAX_REDIRECTS) throw new FailedPreconditionError(`${this.where(endpoint)}: more than ${MAX_REDIRECTS} redirects`);
        const next = new URL(location, url);
        if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new FailedPreconditionError(`${this.where(endpoint)} redirected to a ${next.protocol} URL`);
        url = next;
        continue;
      }
      return res;
    }
  }

  private credentialsFor(endpoint: RegistryEndpoint): RegistryCredentials | undefined {
    return endpoint.mirror ? undefined : this.opts.credentials;
  }

  /** Reads a small body in full, refusing more than `max` bytes. */
  private async readBody(res: http.IncomingMessage, max: number, what: string): Promise<Buffer> {
    const length = Number(res.headers['content-length'] ?? NaN);
    if (Number.isFinite(length) && length > max) {
      res.destroy();
      throw new ResourceExhaustedError(`${what} is ${length} bytes, more than the ${max} allowed`);
    }
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of res as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > max) {
        res.destroy();
        throw new ResourceExhaustedError(`${what} is larger than the ${max} bytes allowed`);
      }
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }

  private async errorDetail(res: http.IncomingMessage): Promise<string> {
    try {
      const text = (await this.readBody(res, MAX_ERROR_BODY_BYTES, 'error body')).toString('utf8');
      const doc = JSON.parse(text) as { errors?: { code?: unknown; message?: unknown }[] };
      const first = doc.errors?.[0];
      if (first && typeof first.code === 'string') return `: ${first.code}${typeof first.message === 'string' ? ` (${first.message.slice(0, 200)})` : ''}`;
    } catch {
      res.destroy();
    }
    return '';
  }

  /** Obtains a token for `challenge` at its realm and remembers it for the endpoint. */
  private async authenticate(endpoint: RegistryEndpoint, header: string | undefined): Promise<void> {
    const challenges = parseChallenges(header ?? '');
    const creds = this.credentialsFor(endpoint);
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const basic = challenges.find((c) => c.scheme === 'basic');
    if (bearer) {
      if (creds?.kind === 'registry-token') {
        this.authorization.set(endpoint.origin, `Bearer ${creds.token}`);
        return;
      }
      const realm = bearer.params.realm;
      let realmUrl: URL;
      try {
        realmUrl = new URL(realm ?? '');
      } catch {
        throw new FailedPreconditionError(`${this.where(endpoint)} asked for a token but named no usable realm`);
      }
      if (realmUrl.protocol !== 'https:' && realmUrl.protocol !== 'http:') throw new FailedPreconditionError(`${this.where(endpoint)} named a ${realmUrl.protocol} token realm`);
      const scope = bearer.params.scope ?? pullScope(this.opts.repository);
      const service = bearer.params.service;
      let res: http.IncomingMessage;
      if (creds?.kind === 'identity') {
        const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.token, client_id: 'vmlet', scope });
        if (service !== undefined) form.set('service', service);
        const body = Buffer.from(form.toString());
        res = await this.send(realmUrl, endpoint, 'POST', { 'content-type': 'application/x-www-form-urlencoded', 'content-length': body.length, accept: 'application/json' }, body);
      } else {
        for (const s of scope.split(' ')) realmUrl.searchParams.append('scope', s);
        if (service !== undefined) realmUrl.searchParams.set('service', service);
        const headers: http.OutgoingHttpHeaders = { accept: 'application/json' };
        if (creds?.kind === 'basic') headers.authorization = basicAuthorization(creds.username, creds.password);
        res = await this.send(realmUrl, endpoint, 'GET', headers);
      }
      if (res.statusCode !== 200) {
        const detail = await this.errorDetail(res);
        throw new FailedPreconditionError(
          `token service ${realmUrl.origin} for ${this.where(endpoint)} refused ${creds ? 'the pull credentials' : 'an anonymous token'} (HTTP ${res.statusCode}${detail})`,
        );
      }
      let token: unknown;
      try {
        const doc = JSON.parse((await this.readBody(res, MAX_TOKEN_RESPONSE_BYTES, 'token response')).toString('utf8')) as Record<string, unknown>;
        token = doc.token ?? doc.access_token;
      } catch (err) {
        if (err instanceof VmletError) throw err;
        throw new FailedPreconditionError(`token service ${realmUrl.origin} answered something that is not JSON`);
      }
      if (typeof token !== 'string' || token === '' || /[\r\n\0]/.test(token)) throw new FailedPreconditionError(`token service ${realmUrl.origin} answered without a token`);
      this.authorization.set(endpoint.origin, `Bearer ${token}`);
      return;
    }
    if (basic) {
      if (creds?.kind !== 'basic') {
        throw new FailedPreconditionError(`${this.where(endpoint)} requires a username and password (HTTP 401, Basic); the pull carried ${creds ? 'a token' : 'no credentials'}`);
      }
      this.authorization.set(endpoint.origin, basicAuthorization(creds.username, creds.password));
      return;
    }
    throw new FailedPreconditionError(`${this.where(endpoint)} answered HTTP 401 without a Bearer or Basic challenge`);
  }

  /** GET under the endpoint's API path, authenticating once on 401. */
  private async get(endpoint: RegistryEndpoint, path: string, accept: string): Promise<http.IncomingMessage> {
    for (let attempt = 0; ; attempt++) {
      const headers: http.OutgoingHttpHeaders = { ...endpoint.headers, accept };
      const auth = this.authorization.get(endpoint.origin);
      if (auth) headers.authorization = auth;
      const res = await this.sendFollowing(endpoint, `${endpoint.apiPath}${path}`, headers);
      if (res.statusCode === 401 && attempt === 0) {
        res.resume();
        await this.authenticate(endpoint, res.headers['www-authenticate']);
        continue;
      }
      return res;
    }
  }

  private async statusError(endpoint: RegistryEndpoint, res: http.IncomingMessage, what: string): Promise<VmletError> {
    const status = res.statusCode ?? 0;
    const detail = await this.errorDetail(res);
    const text = `${this.where(endpoint)} answered HTTP ${status} for ${what}${detail}`;
    if (status === 404) return new NotFoundError(text);
    if (status === 401 || status === 403) {
      const creds = this.credentialsFor(endpoint);
      return new FailedPreconditionError(`${text}; ${creds ? 'the pull credentials were refused' : 'the pull carried no credentials'}`);
    }
    if (status === 429 || status >= 500) return new UnavailableError(text);
    return new FailedPreconditionError(text);
  }

  private wrap(err: unknown, endpoint: RegistryEndpoint, what: string): VmletError {
    if (this.opts.signal.aborted) return this.opts.signal.reason as VmletError;
    if (err instanceof VmletError) return err;
    return new UnavailableError(`cannot fetch ${what} from ${this.where(endpoint)}: ${errorText(err)}`, { cause: err });
  }

  /**
   * Tries each endpoint with `capability` in order; returns the first 200 answer with its body
   * unread. A mirror's failure falls through to the next endpoint; the last error is thrown.
   */
  async open(capability: Capability, path: string, accept: string, what: string, prefer?: RegistryEndpoint): Promise<{ res: http.IncomingMessage; endpoint: RegistryEndpoint }> {
    const candidates = this.opts.endpoints.filter((e) => e.capabilities.has(capability));
    if (prefer && candidates.includes(prefer)) candidates.sort((a, b) => (a === prefer ? -1 : b === prefer ? 1 : 0));
    if (candidates.length === 0) throw new FailedPreconditionError(`no endpoint of ${this.opts.registry} has the ${capability} capability in its hosts.toml`);
    let last: VmletError | undefined;
    for (const endpoint of candidates) {
      try {
        const res = await this.get(endpoint, path, accept);
        if (res.statusCode === 200) return { res, endpoint };
        throw await this.statusError(endpoint, res, what);
      } catch (err) {
        last = this.wrap(err, endpoint, what);
        if (this.opts.signal.aborted) throw last;
      }
    }
    throw last!;
  }

  /** A manifest (or index) by tag or digest, in full (bounded). */
  async manifest(reference: string, accept: string, maxBytes: number): Promise<Fetched> {
    const capability: Capability = reference.startsWith('sha256:') ? 'pull' : 'resolve';
    const what = `manifest ${this.opts.repository}:${reference}`.replace(':sha256:', '@sha256:');
    const { res, endpoint } = await this.open(capability, `/${this.opts.repository}/manifests/${reference}`, accept, what);
    try {
      const body = await this.readBody(res, maxBytes, what);
      return { body, contentType: String(res.headers['content-type'] ?? '').split(';')[0]!.trim(), endpoint };
    } catch (err) {
      throw this.wrap(err, endpoint, what);
    }
  }

  /** A blob's response, body unread; the caller verifies what it reads. */
  async blob(digest: string, prefer?: RegistryEndpoint): Promise<{ res: http.IncomingMessage; endpoint: RegistryEndpoint }> {
    return this.open('pull', `/${this.opts.repository}/blobs/${digest}`, '*/*', `blob ${digest}`, prefer);
  }

  /** A small blob (the image config) in full. */
  async smallBlob(digest: string, maxBytes: number, prefer?: RegistryEndpoint): Promise<Buffer> {
    const { res, endpoint } = await this.blob(digest, prefer);
    try {
      return await this.readBody(res, maxBytes, `blob ${digest}`);
    } catch (err) {
      throw this.wrap(err, endpoint, `blob ${digest}`);
    }
  }
}
