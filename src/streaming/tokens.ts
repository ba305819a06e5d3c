/**
 * One-time, expiring tokens for streaming URLs, as kubelet's streaming server has them: Exec,
 * Attach and PortForward store the request under a random token; the URL carries it; the first
 * use consumes it. Unused tokens expire after `ttlMs`; at most `maxInFlight` wait at once.
 */
import { randomBytes } from 'node:crypto';
import { UnavailableError } from '../errors.js';

export const DEFAULT_TOKEN_TTL_MS = 60_000;
export const DEFAULT_MAX_IN_FLIGHT = 1000;
/** 8 random bytes, base64url: kubelet's token size. */
const TOKEN_BYTES = 8;
export const TOKEN_PATTERN = /^[A-Za-z0-9_-]{11}$/;

export class TokenCache<T> {
  private readonly entries = new Map<string, { value: T; expiresAt: number }>();

  constructor(
    private readonly ttlMs = DEFAULT_TOKEN_TTL_MS,
    private readonly maxInFlight = DEFAULT_MAX_IN_FLIGHT,
    private readonly now: () => number = Date.now,
  ) {}

  insert(value: T): string {
    this.evictExpired();
    if (this.entries.size >= this.maxInFlight) {
      throw new UnavailableError(`${this.maxInFlight} streaming requests are already waiting for their clients`);
    }
    let token: string;
    do token = randomBytes(TOKEN_BYTES).toString('base64url');
    while (this.entries.has(token));
    this.entries.set(token, { value, expiresAt: this.now() + this.ttlMs });
    return token;
  }

  /** The request under `token`, removed; undefined if unknown, used or expired. */
  consume(token: string): T | undefined {
    const entry = this.entries.get(token);
    if (!entry) return undefined;
    this.entries.delete(token);
    return entry.expiresAt > this.now() ? entry.value : undefined;
  }

  get size(): number {
    this.evictExpired();
    return this.entries.size;
  }

  private evictExpired(): void {
    const now = this.now();
    for (const [token, entry] of this.entries) if (entry.expiresAt <= now) this.entries.delete(token);
  }
}
