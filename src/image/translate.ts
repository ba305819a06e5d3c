import { X509Certificate } from 'node:crypto';
import { InvalidArgumentError, errorText } from '../errors.js';
import { parseYamlBounded } from '../documents/bounded.js';
import { parseImageName, translationKey, type ImageName } from './reference.js';

/**
 * Image name translation in the format of Virtlet's translation configs (one YAML document per
 * file): `prefix`, `translations` (each `name` or `regexp`, `url`, optional `transport`) and
 * `transports` (name → `timeout` ms, `maxRedirects`, `proxy`, `tls`). Parsing and matching are
 * pure; reading the directory lives in translation_dir.ts.
 */

export interface ClientCertificate {
  cert: string;
  key: string;
}

export interface TlsSettings {
  /** Extra trust anchors (PEM), added to Node's built-in roots. */
  caCertificates: string[];
  /** Certificates offered for client authentication (entries that carry a `key`). */
  clientCertificates: ClientCertificate[];
  /** Name the server certificate is checked against instead of the URL's host. */
  serverName?: string;
  /** Skip server certificate verification. */
  insecure: boolean;
}

export interface TransportProfile {
  /** Limit for the whole download, redirects included; 0 means none. */
  timeoutMs: number;
  /** Redirects followed before giving up. */
  maxRedirects: number;
  /** `http://host:port` proxy: absolute-form requests for http URLs, CONNECT for https. */
  proxy?: string;
  tls?: TlsSettings;
}

/**
 * Virtlet documents "up to 9 redirects" as the default; a missing or null `maxRedirects` means that
 * here too (Virtlet's code treats it as "any number", which we avoid on purpose: a loop must end).
 */
export const DEFAULT_MAX_REDIRECTS = 9;
export const DEFAULT_TRANSPORT: TransportProfile = Object.freeze({ timeoutMs: 0, maxRedirects: DEFAULT_MAX_REDIRECTS });

export interface TranslationRule {
  /** Fixed-name rule, stored as its translation key (`:latest` dropped). */
  name?: string;
  /** Regexp rule, anchored to the whole key. */
  regexp?: RegExp;
  /** The regexp as written, for messages. */
  regexpSource?: string;
  url: string;
  /** Transport profile name; '' is the config's default profile (if it defines one). */
  transport: string;
}

export interface TranslationConfig {
  /** Where the config came from (file name), for messages. */
  source: string;
  prefix: string;
  rules: TranslationRule[];
  transports: ReadonlyMap<string, TransportProfile>;
}

export interface Translation {
  url: string;
  transport: TransportProfile;
  /** The config that matched, or undefined when the name was itself a URL. */
  source?: string;
  transportName?: string;
}

/** Translation files are a few KiB; 1 MiB leaves room for many CA bundles. */
export const MAX_TRANSLATION_CONFIG_BYTES = 1024 * 1024;

function fail(source: string, what: string): never {
  throw new InvalidArgumentError(`image translation config ${source}: ${what}`);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function optionalString(source: string, obj: Record<string, unknown>, key: string, where: string): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') fail(source, `${where}.${key} must be a string`);
  return v;
}

/** True when `text` parses as an absolute http: or https: URL. */
export function isHttpUrl(text: string): boolean {
  try {
    const u = new URL(text);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}

/** Splits a PEM bundle into its CERTIFICATE blocks, each checked to parse. */
function certificateBlocks(source: string, pem: string, where: string): string[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) fail(source, `${where} holds no PEM certificate`);
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch (err) {
      fail(source, `${where} holds an unreadable certificate: ${errorText(err)}`);
    }
  }
  return blocks;
}

function parseTls(source: string, raw: unknown, where: string): TlsSettings {
  if (!isPlainObject(raw)) fail(source, `${where} must be a mapping`);
  const tls: TlsSettings = { caCertificates: [], clientCertificates: [], insecure: false };
  const insecure = raw.insecure;
  if (insecure !== undefined && insecure !== null) {
    if (typeof insecure !== 'boolean') fail(source, `${where}.insecure must be true or false`);
    tls.insecure = insecure;
  }
  const serverName = optionalString(source, raw, 'serverName', where);
  if (serverName) tls.serverName = serverName;
  const certs = raw.certificates;
  if (certs !== undefined && certs !== null) {
    if (!Array.isArray(certs)) fail(source, `${where}.certificates must be a list`);
    certs.forEach((entry, i) => {
      const at = `${where}.certificates[${i}]`;
      if (!isPlainObject(entry)) fail(source, `${at} must be a mapping`);
      const cert = optionalString(source, entry, 'cert', at);
      if (!cert) fail(source, `${at}.cert is missing`);
      const blocks = certificateBlocks(source, cert, `${at}.cert`);
      const key = optionalString(source, entry, 'key', at);
      // An entry with a key is a client identity; one without is a set of trust anchors.
      if (key) {
        if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) fail(source, `${at}.key holds no PEM private key`);
        tls.clientCertificates.push({ cert: blocks.join('\n'), key });
      } else {
        tls.caCertificates.push(...blocks);
      }
    });
  }
  return tls;
}

function parseTransport(source: string, raw: unknown, where: string): TransportProfile {
  if (raw === null || raw === undefined) return { ...DEFAULT_TRANSPORT };
  if (!isPlainObject(raw)) fail(source, `${where} must be a mapping`);
  const profile: TransportProfile = { timeoutMs: 0, maxRedirects: DEFAULT_MAX_REDIRECTS };
  const timeout = raw.timeout;
  if (timeout !== undefined && timeout !== null) {
    if (typeof timeout !== 'number' || !Number.isFinite(timeout)) fail(source, `${where}.timeout must be a number of milliseconds`);
    profile.timeoutMs = timeout > 0 ? Math.ceil(timeout) : 0;
  }
  const maxRedirects = raw.maxRedirects;
  if (maxRedirects !== undefined && maxRedirects !== null) {
    if (typeof maxRedirects !== 'number' || !Number.isInteger(maxRedirects) || maxRedirects < 0) {
      fail(source, `${where}.maxRedirects must be a whole number >= 0`);
    }
    profile.maxRedirects = maxRedirects;
  }
  const proxy = optionalString(source, raw, 'proxy', where);
  if (proxy) {
    let u: URL;
    try {
      u = new URL(proxy);
    } catch {
      fail(source, `${where}.proxy is not a URL`);
    }
    if (u.protocol !== 'http:' || u.hostname === '') fail(source, `${where}.proxy must be an http:// URL`);
    profile.proxy = proxy;
  }
  if (raw.tls !== undefined && raw.tls !== null) profile.tls = parseTls(source, raw.tls, `${where}.tls`);
  return profile;
}

/** Translates a Go RE2 pattern into an anchored JS RegExp (named groups `(?P<n>` and a leading `(?i)`). */
function compileRuleRegexp(source: string, pattern: string, where: string): RegExp {
  let body = pattern;
  let flags = '';
  if (body.startsWith('(?i)')) {
    body = body.slice(4);
    flags = 'i';
  }
  body = body.replace(/\(\?P</g, '(?<');
  try {
    // Anchored: a rule for `cirros/(.*)` must not also match `evil/cirros/…`.
    return new RegExp(`^(?:${body})$`, flags);
  } catch (err) {
    fail(source, `${where}.regexp ${JSON.stringify(pattern)} is invalid: ${errorText(err)}`);
  }
}

/**
 * Parses one translation config file. Throws InvalidArgumentError naming `source` and the
 * offending field; unknown fields are ignored, as Virtlet does.
 */
export function parseTranslationConfig(text: string, source: string): TranslationConfig {
  // Size, depth, tokens, aliases and cycles bounded; the message names the file.
  const doc = parseYamlBounded(text, `image translation config ${source}`, { limits: { maxBytes: MAX_TRANSLATION_CONFIG_BYTES } });
  if (doc === null || doc === undefined) return { source, prefix: '', rules: [], transports: new Map() };
  if (!isPlainObject(doc)) fail(source, 'the document must be a mapping');

  const prefixRaw = optionalString(source, doc, 'prefix', 'config') ?? '';
  const prefix = prefixRaw.replace(/\/+$/, '');

  const transports = new Map<string, TransportProfile>();
  const rawTransports = doc.transports;
  if (rawTransports !== undefined && rawTransports !== null) {
    if (!isPlainObject(rawTransports)) fail(source, 'transports must be a mapping of name to profile');
    for (const [name, raw] of Object.entries(rawTransports)) {
      transports.set(name, parseTransport(source, raw, `transports[${JSON.stringify(name)}]`));
    }
  }

  const rules: TranslationRule[] = [];
  const rawRules = doc.translations;
  if (rawRules !== undefined && rawRules !== null) {
    if (!Array.isArray(rawRules)) fail(source, 'translations must be a list');
    rawRules.forEach((raw, i) => {
      const where = `translations[${i}]`;
      if (!isPlainObject(raw)) fail(source, `${where} must be a mapping`);
      const name = optionalString(source, raw, 'name', where);
      const regexp = optionalString(source, raw, 'regexp', where);
      const url = optionalString(source, raw, 'url', where);
      const transport = optionalString(source, raw, 'transport', where) ?? '';
      if (!url) fail(source, `${where}.url is missing`);
      if (!name === !regexp) fail(source, `${where} needs exactly one of name and regexp`);
      // A transport that is not defined would silently drop a CA or proxy; refuse it instead.
      if (transport !== '' && !transports.has(transport)) fail(source, `${where}.transport ${JSON.stringify(transport)} is not defined in transports`);
      if (name) {
        if (!isHttpUrl(url)) fail(source, `${where}.url must be an http(s) URL`);
        let key: string;
        try {
          key = translationKey(parseImageName(name));
        } catch (err) {
          fail(source, `${where}.name: ${errorText(err)}`);
        }
        rules.push({ name: key, url, transport });
      } else {
        // Fixed URLs are checked now; templated ones after substitution.
        if (!url.includes('$') && !isHttpUrl(url)) fail(source, `${where}.url must be an http(s) URL`);
        rules.push({ regexp: compileRuleRegexp(source, regexp!, where), regexpSource: regexp!, url, transport });
      }
    });
  }
  return { source, prefix, rules, transports };
}

/**
 * Expands `$1`, `${1}`, `$name`, `${name}` and `$$` the way Go's Regexp.Expand does (which
 * Virtlet's configs are written for): `$name` takes the longest run of letters, digits and `_`;
 * an unknown or unmatched group expands to nothing.
 */
export function expandTemplate(template: string, match: RegExpExecArray): string {
  return template.replace(/\$(?:\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))/g, (whole, braced?: string, bare?: string) => {
    if (whole === '$$') return '$';
    const ref = (braced ?? bare)!;
    if (/^[0-9]+$/.test(ref)) return match[Number(ref)] ?? '';
    return match.groups?.[ref] ?? '';
  });
}

function profileFor(config: TranslationConfig, rule: TranslationRule): TransportProfile {
  return config.transports.get(rule.transport) ?? DEFAULT_TRANSPORT;
}

type Candidate = { config: TranslationConfig; key: string };

/**
 * Finds the URL for an image name. Precedence: fixed names before regexps (as in Virtlet);
 * within each, a config whose prefix the name carries (`prefix/rest`) before a plain match of the
 * whole name against every config (so `cirros` finds a rule in a prefixed config too); then
 * configs in the order given, rules in file order. A name with no rule that is itself an http(s)
 * URL is used as is. Returns undefined when nothing applies.
 * Throws InvalidArgumentError if a regexp rule produces something that is not an http(s) URL.
 */
export function translateImageName(configs: readonly TranslationConfig[], name: ImageName): Translation | undefined {
  const key = translationKey(name);
  const candidates: Candidate[] = [];
  for (const config of configs) {
    if (config.prefix !== '' && key.startsWith(`${config.prefix}/`)) {
      candidates.push({ config, key: key.slice(config.prefix.length + 1) });
    }
  }
  for (const config of configs) candidates.push({ config, key });

  for (const { config, key: k } of candidates) {
    for (const rule of config.rules) {
      if (rule.name !== undefined && rule.name === k) {
        return { url: rule.url, transport: profileFor(config, rule), source: config.source, transportName: rule.transport };
      }
    }
  }
  for (const { config, key: k } of candidates) {
    for (const rule of config.rules) {
      if (rule.regexp === undefined) continue;
      const m = rule.regexp.exec(k);
      if (!m) continue;
      const url = expandTemplate(rule.url, m);
      if (!isHttpUrl(url)) {
        throw new InvalidArgumentError(
          `image translation config ${config.source}: regexp ${JSON.stringify(rule.regexpSource)} turns the image name into ${JSON.stringify(url)}, which is not an http(s) URL`,
        );
      }
      return { url, transport: profileFor(config, rule), source: config.source, transportName: rule.transport };
    }
  }
  // Names are matched without `:latest`; a URL given as a name keeps any other tag as part of the URL.
  if (isHttpUrl(key)) return { url: key, transport: DEFAULT_TRANSPORT };
  return undefined;
}
