import { InvalidArgumentError } from '../../errors.js';
import { DEFAULT_TAG, type ImageName } from '../reference.js';

/**
 * Registry references (`host[:port]/path[:tag][@sha256:<hex>]`) and the one routing decision
 * "is this image a VM image, and from where". Pure functions.
 *
 * A name is a registry reference only when its first path component names a host: it contains
 * a `.` or a `:`, or is `localhost` (the rule Docker and containerd use to tell a domain from a
 * Docker Hub user). Bare names (`cirros`, `vm/ubuntu`) stay translation names: vmlet does not
 * guess Docker Hub for them, so an untranslated bare name keeps failing with NOT_FOUND.
 */

export interface RegistryReference {
  /** `host[:port]` as written (lowercased); the hosts.toml namespace. */
  registry: string;
  /** Repository path inside the registry, e.g. `vmlet/guest`. */
  repository: string;
  /** Tag, when the name had one (or `latest` when it had neither tag nor digest). */
  tag?: string;
  /** `sha256:<hex>` when pinned. */
  digest?: string;
}

/** Prefix Virtlet used for VM image names; always resolved by translation. */
export const VIRTLET_PREFIX = 'virtlet.cloud/';

// The distribution spec's repository name grammar: path components of lowercase alphanumerics
// separated by `.`, `_`, `__` or runs of `-`.
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;
const MAX_REPOSITORY_LENGTH = 255;

function firstComponent(repo: string): string | undefined {
  const slash = repo.indexOf('/');
  return slash <= 0 ? undefined : repo.slice(0, slash);
}

/** True when `repo` (the part before tag and digest) starts with a registry host. */
export function looksLikeRegistryRepo(repo: string): boolean {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(repo)) return false; // a URL
  const first = firstComponent(repo);
  if (first === undefined) return false;
  return (first.includes('.') || first.includes(':') || first === 'localhost') && HOST_RE.test(first);
}

/**
 * Splits a parsed name into registry, repository, tag and digest. Throws InvalidArgumentError
 * when the host or a path component breaks the distribution grammar.
 */
export function toRegistryReference(name: ImageName): RegistryReference {
  const first = firstComponent(name.repo);
  if (first === undefined || !looksLikeRegistryRepo(name.repo)) {
    throw new InvalidArgumentError(`image name ${JSON.stringify(name.repo)} does not start with a registry host`);
  }
  const repository = name.repo.slice(first.length + 1);
  if (repository.length === 0 || repository.length > MAX_REPOSITORY_LENGTH) {
    throw new InvalidArgumentError(`image name ${JSON.stringify(name.repo)}: the repository path must be 1 to ${MAX_REPOSITORY_LENGTH} characters`);
  }
  for (const component of repository.split('/')) {
    if (!PATH_COMPONENT_RE.test(component)) {
      throw new InvalidArgumentError(
        `image name ${JSON.stringify(name.repo)}: repository component ${JSON.stringify(component)} must be lowercase letters and digits separated by '.', '_', '__' or '-'`,
      );
    }
  }
  const ref: RegistryReference = { registry: first.toLowerCase(), repository };
  if (name.tag !== undefined) ref.tag = name.tag;
  else if (name.digest === undefined) ref.tag = DEFAULT_TAG;
  if (name.digest !== undefined) ref.digest = name.digest;
  return ref;
}

/** How vmlet obtains an image name. */
export type ImageSource = 'url' | 'translation' | 'registry';

/**
 * The routing decision for a name, in one place: an http(s) URL is downloaded; a `virtlet.cloud/`
 * name or a name a translation rule knows is translated to a URL; a name starting with a registry
 * host is pulled from that registry as a containerDisk. Undefined: not a VM image vmlet can get
 * (a containerd delegate, when one exists, would take it).
 *
 * `translationKnows` answers whether the translation config has a rule for the name (translation
 * wins over the registry so a node can redirect a registry-looking name to an http mirror).
 */
export function imageSourceOf(name: ImageName, translationKnows: (name: ImageName) => boolean, isHttpUrl: (text: string) => boolean): ImageSource | undefined {
  if (isHttpUrl(name.repo)) return 'url';
  if (name.repo.startsWith(VIRTLET_PREFIX)) return 'translation';
  if (translationKnows(name)) return 'translation';
  if (looksLikeRegistryRepo(name.repo)) return 'registry';
  return undefined;
}
