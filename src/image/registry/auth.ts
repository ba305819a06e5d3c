import { InvalidArgumentError } from '../../errors.js';

/**
 * Registry credentials and `WWW-Authenticate` challenges (RFC 7235 syntax; the Docker token
 * flow: `Bearer realm="…",service="…",scope="…"`). Pure functions.
 */

/** What CRI's AuthConfig carries, reduced to one kind of credential. */
export type RegistryCredentials =
  | { kind: 'basic'; username: string; password: string }
  /** OAuth2 refresh token (`identity_token`): exchanged at the realm with a POST. */
  | { kind: 'identity'; username: string; token: string }
  /** A bearer token to send as is (`registry_token`). */
  | { kind: 'registry-token'; token: string };

export interface AuthConfigInput {
  username?: string;
  password?: string;
  auth?: string;
  server_address?: string;
  identity_token?: string;
  registry_token?: string;
}

const MAX_CREDENTIAL_LENGTH = 64 * 1024;

function checked(v: string | undefined, field: string): string {
  const s = v ?? '';
  if (s.length > MAX_CREDENTIAL_LENGTH) throw new InvalidArgumentError(`auth.${field} is longer than ${MAX_CREDENTIAL_LENGTH} characters`);
  if (/[\r\n\0]/.test(s)) throw new InvalidArgumentError(`auth.${field} contains a line break or NUL`);
  return s;
}

/**
 * Credentials from a CRI AuthConfig, or undefined when it carries none. Precedence as in
 * containerd: registry_token, then identity_token, then username/password, then `auth`
 * (base64 of `user:password`).
 */
export function credentialsFromAuthConfig(auth: AuthConfigInput | undefined | null): RegistryCredentials | undefined {
  if (!auth) return undefined;
  const registryToken = checked(auth.registry_token, 'registry_token');
  const identityToken = checked(auth.identity_token, 'identity_token');
  let username = checked(auth.username, 'username');
  let password = checked(auth.password, 'password');
  const encoded = checked(auth.auth, 'auth');
  checked(auth.server_address, 'server_address');
  if (registryToken !== '') return { kind: 'registry-token', token: registryToken };
  if (encoded !== '' && username === '' && password === '') {
    if (!/^[A-Za-z0-9+/=\s]+$/.test(encoded)) throw new InvalidArgumentError('auth.auth is not base64');
    const decoded = Buffer.from(encoded, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new InvalidArgumentError('auth.auth must be base64 of "username:password"');
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  if (identityToken !== '') return { kind: 'identity', username, token: identityToken };
  if (username !== '' || password !== '') return { kind: 'basic', username, password };
  return undefined;
}

export interface Challenge {
  /** Lowercased scheme, e.g. `bearer`, `basic`. */
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses a WWW-Authenticate header value into challenges. Parameter names are lowercased;
 * quoted values are unescaped. Malformed parts end the parse (what was read is returned).
 */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const n = header.length;
  const skipSpace = (): void => {
    while (i < n && (header[i] === ' ' || header[i] === '\t')) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < n && /[A-Za-z0-9!#$%&'*+.^_`|~-]/.test(header[i]!)) i++;
    return header.slice(start, i);
  };
  while (i < n) {
    skipSpace();
    while (i < n && header[i] === ',') {
      i++;
      skipSpace();
    }
    const scheme = token();
    if (scheme === '') break;
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(challenge);
    for (;;) {
      skipSpace();
      const save = i;
      const name = token();
      skipSpace();
      if (name === '' || header[i] !== '=') {
        i = save;
        // token68 form (e.g. `Negotiate abc==`) or the next challenge starts here.
        if (name !== '' && header[i] !== ',' && i < n && !/[=]/.test(header[i] ?? '')) break;
        if (header[i] === ',') {
          const after = header.slice(i + 1).trimStart();
          if (/^[A-Za-z0-9!#$%&'*+.^_`|~-]+\s*=/.test(after)) {
            i++;
            continue;
          }
        }
        break;
      }
      i++; // '='
      skipSpace();
      let value = '';
      if (header[i] === '"') {
        i++;
        while (i < n && header[i] !== '"') {
          if (header[i] === '\\' && i + 1 < n) i++;
          value += header[i];
          i++;
        }
        i++; // closing quote
      } else {
        value = token();
      }
      challenge.params[name.toLowerCase()] = value;
      skipSpace();
      if (header[i] !== ',') break;
      // A comma either separates parameters or starts the next challenge (`, Basic realm=…`).
      const after = header.slice(i + 1).trimStart();
      if (/^[A-Za-z0-9!#$%&'*+.^_`|~-]+\s*=/.test(after)) {
        i++;
        continue;
      }
      break;
    }
  }
  return out;
}

/** The `Authorization` value for basic credentials. */
export function basicAuthorization(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

/** The pull scope for a repository, as the token flow names it. */
export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}
