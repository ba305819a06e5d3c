import { readFile, readdir, stat } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { isAbsolute, join, dirname } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { InvalidArgumentError, errorText } from '../../errors.js';

/**
 * Registry host settings in containerd's `config_path` layout (docs/hosts.md of containerd):
 * `<dir>/<host[:port]>/hosts.toml`, else `<dir>/_default/hosts.toml`; without a hosts.toml, the
 * Docker certs.d files of the host's directory (`*.crt` CAs, `*.cert` + `*.key` client pairs).
 *
 * hosts.toml: top-level `server` (the upstream, default `https://<host>`; `docker.io` means
 * `https://registry-1.docker.io`), `ca`, `client`, `skip_verify`, `capabilities`, `override_path`,
 * `header`; and `[host."<url>"]` tables with the same keys, tried in file order before the
 * server. Paths relative to the file's directory. Parsing is pure (`parseHostsToml`); loading
 * reads the files and the certificates they name.
 */

export type Capability = 'pull' | 'resolve' | 'push';

export interface EndpointTls {
  /** Extra trust anchors (PEM). */
  ca: string[];
  client: { cert: string; key: string }[];
  skipVerify: boolean;
}

export interface RegistryEndpoint {
  /** `scheme://host[:port]`. */
  origin: string;
  /** Prefix of API paths: `/v2` unless `override_path` gave the full path. */
  apiPath: string;
  capabilities: ReadonlySet<Capability>;
  tls: EndpointTls;
  headers: Record<string, string>;
  /** True for `[host]` entries: tried first; a failure falls through to the next. */
  mirror: boolean;
  /** A loopback server without a configured scheme: https first, plain http if it does not speak TLS. */
  httpFallback: boolean;
}

/** Paths as written, before the files are read. */
export interface EndpointSpec {
  url: string;
  capabilities: Capability[];
  caFiles: string[];
  clientFiles: { cert: string; key: string }[];
  skipVerify: boolean;
  overridePath: boolean;
  headers: Record<string, string>;
  mirror: boolean;
  /** The server was not configured: the default `https://<host>`. */
  implicitServer?: boolean;
}

export const MAX_HOSTS_TOML_BYTES = 64 * 1024;
export const MAX_CERT_FILE_BYTES = 1024 * 1024;
const MAX_HOSTS = 16;
const ALL_CAPABILITIES: Capability[] = ['pull', 'resolve', 'push'];
export const DEFAULT_NAMESPACE_DIR = '_default';

function fail(source: string, what: string): never {
  throw new InvalidArgumentError(`registry config ${source}: ${what}`);
}

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** The default upstream of a namespace, as containerd picks it. */
export function defaultServer(namespace: string): string {
  return namespace === 'docker.io' ? 'https://registry-1.docker.io' : `https://${namespace}`;
}

export function isLoopbackHost(hostPort: string): boolean {
  const host = hostPort.startsWith('[') ? hostPort.slice(1, hostPort.indexOf(']')) : hostPort.replace(/:[0-9]+$/, '');
  return host === 'localhost' || host === '::1' || /^127\.[0-9]+\.[0-9]+\.[0-9]+$/.test(host);
}

function stringList(source: string, v: unknown, where: string): string[] {
  if (v === undefined) return [];
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  fail(source, `${where} must be a string or a list of strings`);
}

function clientPairs(source: string, v: unknown, where: string): { cert: string; key: string }[] {
  if (v === undefined) return [];
  // containerd accepts "cert", ["cert", "key"], or [["cert", "key"], ...]; a lone cert holds its key.
  if (typeof v === 'string') return [{ cert: v, key: v }];
  if (!Array.isArray(v)) fail(source, `${where} must be a path or a list of [cert, key] pairs`);
  if (v.length === 2 && v.every((x) => typeof x === 'string')) return [{ cert: v[0] as string, key: v[1] as string }];
  return v.map((pair, i) => {
    if (typeof pair === 'string') return { cert: pair, key: pair };
    if (Array.isArray(pair) && pair.length === 2 && pair.every((x) => typeof x === 'string')) return { cert: pair[0] as string, key: pair[1] as string };
    fail(source, `${where}[${i}] must be a path or a [cert, key] pair`);
  });
}

function entrySpec(source: string, url: string, raw: Record<string, unknown>, where: string, mirror: boolean): EndpointSpec {
  const known = new Set(['capabilities', 'ca', 'client', 'skip_verify', 'override_path', 'header', 'host', 'server']);
  for (const key of Object.keys(raw)) if (!known.has(key)) fail(source, `${where}: unknown key ${JSON.stringify(key)}`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    fail(source, `${where}: ${JSON.stringify(url)} is not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') fail(source, `${where}: ${JSON.stringify(url)} must be http or https`);
  if (parsed.username || parsed.password || parsed.search || parsed.hash) fail(source, `${where}: ${JSON.stringify(url)} must not carry credentials, a query or a fragment`);
  const capabilities = raw.capabilities === undefined ? ALL_CAPABILITIES : stringList(source, raw.capabilities, `${where}.capabilities`);
  for (const c of capabilities) if (!ALL_CAPABILITIES.includes(c as Capability)) fail(source, `${where}.capabilities: unknown capability ${JSON.stringify(c)}`);
  if (raw.skip_verify !== undefined && typeof raw.skip_verify !== 'boolean') fail(source, `${where}.skip_verify must be true or false`);
  if (raw.override_path !== undefined && typeof raw.override_path !== 'boolean') fail(source, `${where}.override_path must be true or false`);
  const headers: Record<string, string> = {};
  if (raw.header !== undefined) {
    if (!isTable(raw.header)) fail(source, `${where}.header must be a table`);
    for (const [k, v] of Object.entries(raw.header)) {
      const value = stringList(source, v, `${where}.header.${k}`).join(', ');
      if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(k) || /[\r\n\0]/.test(value)) fail(source, `${where}.header: invalid header ${JSON.stringify(k)}`);
      headers[k.toLowerCase()] = value;
    }
  }
  return {
    url,
    capabilities: capabilities as Capability[],
    caFiles: stringList(source, raw.ca, `${where}.ca`),
    clientFiles: clientPairs(source, raw.client, `${where}.client`),
    skipVerify: raw.skip_verify === true,
    overridePath: raw.override_path === true,
    headers,
    mirror,
  };
}

/** Parses one hosts.toml: mirrors in file order, then the server. */
export function parseHostsToml(text: string, source: string, namespace: string): EndpointSpec[] {
  if (Buffer.byteLength(text) > MAX_HOSTS_TOML_BYTES) fail(source, `larger than ${MAX_HOSTS_TOML_BYTES} bytes`);
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    fail(source, `not valid TOML: ${errorText(err).split('\n')[0]}`);
  }
  const specs: EndpointSpec[] = [];
  const hosts = doc.host;
  if (hosts !== undefined) {
    if (!isTable(hosts)) fail(source, 'host must be a table of [host."<url>"] entries');
    const entries = Object.entries(hosts);
    if (entries.length > MAX_HOSTS) fail(source, `more than ${MAX_HOSTS} hosts`);
    for (const [url, raw] of entries) {
      if (!isTable(raw)) fail(source, `host.${JSON.stringify(url)} must be a table`);
      specs.push(entrySpec(source, url, raw, `host.${JSON.stringify(url)}`, true));
    }
  }
  const top: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc)) if (k !== 'host') top[k] = v;
  if (top.server !== undefined && typeof top.server !== 'string') fail(source, 'server must be a string');
  const server = (top.server as string | undefined) ?? defaultServer(namespace);
  const serverSpec = entrySpec(source, server, top, 'server', false);
  if (top.server === undefined) serverSpec.implicitServer = true;
  specs.push(serverSpec);
  return specs;
}

async function readBounded(path: string, what: string): Promise<string> {
  const info = await stat(path).catch((err: unknown) => {
    throw new InvalidArgumentError(`${what} ${path}: ${errorText(err)}`);
  });
  if (!info.isFile()) throw new InvalidArgumentError(`${what} ${path} is not a regular file`);
  if (info.size > MAX_CERT_FILE_BYTES) throw new InvalidArgumentError(`${what} ${path} is larger than ${MAX_CERT_FILE_BYTES} bytes`);
  return readFile(path, 'utf8');
}

function checkCertificates(pem: string, path: string): string {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new InvalidArgumentError(`registry CA file ${path} holds no PEM certificate`);
  for (const b of blocks) {
    try {
      new X509Certificate(b);
    } catch (err) {
      throw new InvalidArgumentError(`registry CA file ${path} holds an unreadable certificate: ${errorText(err)}`);
    }
  }
  return pem;
}

async function resolveSpec(spec: EndpointSpec, baseDir: string, namespace: string): Promise<RegistryEndpoint> {
  const abs = (p: string): string => (isAbsolute(p) ? p : join(baseDir, p));
  const ca: string[] = [];
  for (const f of spec.caFiles) ca.push(checkCertificates(await readBounded(abs(f), 'registry CA file'), abs(f)));
  const client: { cert: string; key: string }[] = [];
  for (const pair of spec.clientFiles) {
    client.push({ cert: await readBounded(abs(pair.cert), 'registry client certificate'), key: await readBounded(abs(pair.key), 'registry client key') });
  }
  const u = new URL(spec.url);
  const path = u.pathname.replace(/\/+$/, '');
  const apiPath = spec.overridePath ? path : path.endsWith('/v2') ? path : `${path}/v2`;
  return {
    origin: u.origin,
    apiPath,
    capabilities: new Set(spec.capabilities),
    tls: { ca, client, skipVerify: spec.skipVerify },
    headers: spec.headers,
    mirror: spec.mirror,
    httpFallback: spec.implicitServer === true && isLoopbackHost(namespace),
  };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Docker's certs.d files: `*.crt` CAs, `*.cert` with the `*.key` of the same name. */
async function certsDirEndpoint(hostDir: string, namespace: string): Promise<RegistryEndpoint> {
  const names = (await readdir(hostDir).catch(() => [] as string[])).sort();
  const spec: EndpointSpec = {
    url: defaultServer(namespace),
    capabilities: ALL_CAPABILITIES,
    caFiles: names.filter((n) => n.endsWith('.crt')),
    clientFiles: names.filter((n) => n.endsWith('.cert') && names.includes(`${n.slice(0, -5)}.key`)).map((n) => ({ cert: n, key: `${n.slice(0, -5)}.key` })),
    skipVerify: false,
    overridePath: false,
    headers: {},
    mirror: false,
    implicitServer: true,
  };
  return resolveSpec(spec, hostDir, namespace);
}

/**
 * The endpoints to try for registry `namespace` (`host[:port]`), mirrors first. `configDir`
 * absent or missing means the default: the registry itself over https (with a plain-http
 * fallback for loopback hosts, as containerd does for localhost).
 */
export async function loadRegistryHosts(configDir: string | undefined, namespace: string): Promise<RegistryEndpoint[]> {
  if (!configDir) return [await certsDirEndpoint('/nonexistent', namespace)];
  // The namespace is a validated host[:port]; it never contains '/' or '..'.
  if (!/^[A-Za-z0-9.:[\]-]+$/.test(namespace) || namespace.includes('..')) throw new InvalidArgumentError(`invalid registry host ${JSON.stringify(namespace)}`);
  for (const dir of [join(configDir, namespace), join(configDir, DEFAULT_NAMESPACE_DIR)]) {
    const file = join(dir, 'hosts.toml');
    if (await exists(file)) {
      const text = await readBounded(file, 'registry config');
      const specs = parseHostsToml(text, file, namespace);
      const endpoints: RegistryEndpoint[] = [];
      for (const spec of specs) endpoints.push(await resolveSpec(spec, dirname(file), namespace));
      return endpoints;
    }
    if (dir === join(configDir, namespace) && (await exists(dir))) return [await certsDirEndpoint(dir, namespace)];
  }
  return [await certsDirEndpoint('/nonexistent', namespace)];
}
