import { InvalidArgumentError } from '../errors.js';

/**
 * Image references as vmlet understands them. Pure functions, no I/O.
 *
 * A reference is either an image id (`sha256:<hex>` or the bare 64-digit hex) or a name:
 * `repo[:tag][@sha256:<hex>]`. The repo part may be anything printable (a translation key such as
 * `cirros` or `vmlet/ubuntu/22.04`, or a whole http(s) URL); nothing of it is ever used as a path.
 */

export const MAX_IMAGE_NAME_LENGTH = 4096;
export const DEFAULT_TAG = 'latest';

const HEX_ID_RE = /^[0-9a-f]{64}$/;
const PREFIXED_ID_RE = /^sha256:[0-9a-f]{64}$/;
// Docker's tag grammar; a colon followed by something else is part of the repo (e.g. a URL port).
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST_MARK = 'sha256:';

export interface ImageName {
  /** Everything before the tag and digest. */
  repo: string;
  /** Explicit tag, if the name had one. */
  tag?: string;
  /** `sha256:<hex>` when the name pinned content with `@sha256:<hex>`. */
  digest?: string;
}

export type ImageRef = { kind: 'id'; id: string } | { kind: 'name'; name: ImageName };

/** `sha256:<hex>` for an id given either way, or undefined when `text` is not an id. */
export function normalizeImageId(text: string): string | undefined {
  if (PREFIXED_ID_RE.test(text)) return text;
  if (HEX_ID_RE.test(text)) return DIGEST_MARK + text;
  return undefined;
}

/** The 64 hex digits of a normalized id. */
export function hexOfId(id: string): string {
  if (!PREFIXED_ID_RE.test(id)) throw new InvalidArgumentError(`malformed image id ${JSON.stringify(id)}`);
  return id.slice(DIGEST_MARK.length);
}

/** Parses an id or a name; throws InvalidArgumentError for text that is neither. */
export function parseImageRef(text: string): ImageRef {
  const id = normalizeImageId(text);
  if (id !== undefined) return { kind: 'id', id };
  return { kind: 'name', name: parseImageName(text) };
}

/**
 * Splits a name into repo, tag and digest. Only printable ASCII without spaces is accepted: kubelet
 * never sends anything else, and it keeps control characters out of logs and error messages.
 */
export function parseImageName(text: string): ImageName {
  if (typeof text !== 'string' || text.length === 0) throw new InvalidArgumentError('image name is empty');
  if (text.length > MAX_IMAGE_NAME_LENGTH) {
    throw new InvalidArgumentError(`image name is longer than ${MAX_IMAGE_NAME_LENGTH} characters`);
  }
  if (!/^[\x21-\x7e]+$/.test(text)) {
    throw new InvalidArgumentError(`image name ${JSON.stringify(text)} contains characters other than printable ASCII`);
  }
  let rest = text;
  let digest: string | undefined;
  const at = text.lastIndexOf('@');
  if (at >= 0 && text.startsWith(DIGEST_MARK, at + 1)) {
    digest = text.slice(at + 1);
    if (!PREFIXED_ID_RE.test(digest)) {
      throw new InvalidArgumentError(`image name ${JSON.stringify(text)} has a malformed sha256 digest`);
    }
    rest = text.slice(0, at);
  }
  let tag: string | undefined;
  let repo = rest;
  const colon = rest.lastIndexOf(':');
  if (colon >= 0) {
    const after = rest.slice(colon + 1);
    if (after === '') throw new InvalidArgumentError(`image name ${JSON.stringify(text)} has an empty tag`);
    if (!after.includes('/') && TAG_RE.test(after)) {
      tag = after;
      repo = rest.slice(0, colon);
    }
  }
  if (repo === '') throw new InvalidArgumentError(`image name ${JSON.stringify(text)} has no repository part`);
  const name: ImageName = { repo };
  if (tag !== undefined) name.tag = tag;
  if (digest !== undefined) name.digest = digest;
  return name;
}

/**
 * The tag a pull of this name records, as kubelet expects it in repo_tags: `repo:latest` when
 * the name had neither tag nor digest; none for a digest-only name.
 */
export function repoTagOf(name: ImageName): string | undefined {
  if (name.tag !== undefined) return `${name.repo}:${name.tag}`;
  if (name.digest !== undefined) return undefined;
  return `${name.repo}:${DEFAULT_TAG}`;
}

/** `repo@sha256:<hex>` for a digest-pinned name. */
export function repoDigestOf(name: ImageName): string | undefined {
  return name.digest === undefined ? undefined : `${name.repo}@${name.digest}`;
}

/**
 * What translation rules are matched against: the repo, plus the tag unless it is `latest`
 * (so `cirros`, `cirros:latest` and `cirros@sha256:…` all look up `cirros`).
 */
export function translationKey(name: ImageName): string {
  return name.tag === undefined || name.tag === DEFAULT_TAG ? name.repo : `${name.repo}:${name.tag}`;
}

/** A stable key for "the same pull request", used to share concurrent pulls. */
export function pullKey(name: ImageName): string {
  return `${name.repo}:${name.tag ?? DEFAULT_TAG}@${name.digest ?? ''}`;
}
