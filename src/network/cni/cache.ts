/**
 * On-disk record of each CNI attachment, keyed like the spec's plugin state: (network name,
 * container id, ifname). It holds the config and args the ADD used and, once ADD succeeded, its
 * result, so a DEL after a restart passes plugins the same config and prevResult. Written before
 * ADD runs (state "adding") so even a crash mid-ADD leaves enough for the DEL that cleans up.
 */
import { readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { InternalError } from '../../errors.js';
import { dirChanged, writeFileAtomic } from '../../store/atomic_file.js';
import type { SyncBehind } from '../../store/sync_behind.js';
import { isValidNetworkName, parseConfigList, type NetworkConfigList } from './config.js';
import { validateContainerId, validateIfName, type CapabilityArgs, type PodArgs } from './invocation.js';

export const CACHE_RECORD_KIND = 'vmlet-cni-attachment-v1';

export interface AttachmentKey {
  networkName: string;
  containerId: string;
  ifName: string;
}

export interface CachedAttachment extends AttachmentKey {
  kind: typeof CACHE_RECORD_KIND;
  /** "adding" until the ADD's result is in; a DEL treats both alike. */
  state: 'adding' | 'added';
  netns: string;
  pod?: PodArgs;
  capabilityArgs?: CapabilityArgs;
  config: NetworkConfigList;
  /** The final ADD result exactly as the last plugin printed it. */
  result?: unknown;
}

/** Where the cache lives under vmlet's state dir. */
export function cniCacheDir(stateDir: string): string {
  return join(stateDir, 'cni', 'results');
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export class AttachmentCache {
  /** With `syncBehind`, writes resolve once visible and reach the disk right after, as libcni's (unsynced) cache at best. */
  constructor(
    readonly dir: string,
    private readonly syncBehind?: SyncBehind,
  ) {}

  /** File of one attachment; every part is validated and escaped, and "+" cannot occur in them after escaping. */
  fileFor(key: AttachmentKey): string {
    if (!isValidNetworkName(key.networkName)) throw new InternalError(`invalid network name ${JSON.stringify(key.networkName)}`);
    validateContainerId(key.containerId);
    validateIfName(key.ifName);
    const parts = [key.networkName, key.containerId, key.ifName].map(encodeURIComponent);
    return join(this.dir, `${parts.join('+')}.json`);
  }

  async save(entry: CachedAttachment): Promise<void> {
    await writeFileAtomic(this.fileFor(entry), `${JSON.stringify(entry, null, 2)}\n`, { syncBehind: this.syncBehind });
  }

  /** The record for `key`, undefined when there is none; a record that does not hold up throws. */
  async load(key: AttachmentKey): Promise<CachedAttachment | undefined> {
    const file = this.fileFor(key);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const entry = this.decode(file, text);
    if (entry.networkName !== key.networkName || entry.containerId !== key.containerId || entry.ifName !== key.ifName) {
      throw new InternalError(`CNI cache file ${file} belongs to another attachment`);
    }
    return entry;
  }

  /** Removes the record; removing one that is not there succeeds. */
  async remove(key: AttachmentKey): Promise<void> {
    try {
      await unlink(this.fileFor(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    await dirChanged(this.dir, this.syncBehind);
  }

  /**
   * Every readable record, for garbage collection of attachments whose sandbox is gone; with
   * `containerId`, only that container's (told by the file name, so the others are not read:
   * a teardown among many sandboxes reads its own files only).
   */
  async list(containerId?: string): Promise<CachedAttachment[]> {
    const namePart = containerId === undefined ? undefined : `+${encodeURIComponent(containerId)}+`;
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: CachedAttachment[] = [];
    for (const name of names.sort()) {
      if (name.startsWith('.') || !name.endsWith('.json')) continue;
      if (namePart !== undefined && !name.includes(namePart)) continue;
      const file = join(this.dir, name);
      try {
        const entry = this.decode(file, await readFile(file, 'utf8'));
        if (containerId === undefined || entry.containerId === containerId) out.push(entry);
      } catch {
        // Unreadable leftovers are skipped here; load() reports them for the attachment they name.
      }
    }
    return out;
  }

  private decode(file: string, text: string): CachedAttachment {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new InternalError(`CNI cache file ${file} is not valid JSON`, { cause: err });
    }
    if (!isObject(doc) || doc.kind !== CACHE_RECORD_KIND) throw new InternalError(`CNI cache file ${file} is not a vmlet attachment record`);
    if (doc.state !== 'adding' && doc.state !== 'added') throw new InternalError(`CNI cache file ${file} has no valid state`);
    if (typeof doc.netns !== 'string') throw new InternalError(`CNI cache file ${file} has no netns`);
    const config = isObject(doc.config) ? parseConfigList(doc.config) : undefined;
    if (!config?.ok) throw new InternalError(`CNI cache file ${file} holds no valid config${config ? `: ${config.reason}` : ''}`);
    const key = { networkName: doc.networkName, containerId: doc.containerId, ifName: doc.ifName } as AttachmentKey;
    try {
      this.fileFor(key);
    } catch (err) {
      throw new InternalError(`CNI cache file ${file} names an invalid attachment`, { cause: err });
    }
    return { ...(doc as unknown as CachedAttachment), config: config.config };
  }
}
