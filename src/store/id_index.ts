/** Record ids: a full id or a unique prefix of one, as crictl users type them. */
import { InvalidArgumentError } from '../errors.js';

/** Resolves a full id or a unique prefix among `ids`; undefined when none matches. */
export function resolveId(prefix: string, ids: Iterable<string>, kind: string): string | undefined {
  let found: string | undefined;
  for (const id of ids) {
    if (id === prefix) return id;
    if (id.startsWith(prefix)) {
      if (found !== undefined) throw new InvalidArgumentError(`${kind} id prefix ${prefix} is ambiguous`);
      found = id;
    }
  }
  return found;
}
