/**
 * Named network namespaces for pod sandboxes, bind-mounted under /run/netns like `ip netns` does,
 * so `ip -n NAME`, `ip netns exec` and CNI plugins (given the path) all find them. netd never
 * enters a namespace itself: creation and removal run on a thread of the native helper (or, for
 * the first namespace since boot, through `ip netns add`), everything else by name/path.
 */
import { open, readdir, readFile, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { AlreadyExistsError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { runTool } from './iproute.js';
import { assertNetnsName, isVmletNetnsName } from './names.js';
import { netnsNative } from '../native/netns.js';

/** Where iproute2 keeps named namespaces (compiled into it; /var/run is a link to /run). */
export const NETNS_RUN_DIR = '/run/netns';
/** statfs f_type of an nsfs file: what a namespace bind mount looks like. */
const NSFS_MAGIC = 0x6e736673;

export function netnsPath(name: string): string {
  assertNetnsName(name);
  return join(NETNS_RUN_DIR, name);
}

export interface NetnsManagerOptions {
  logger?: Logger;
  timeoutMs?: number;
  ipPath?: string;
}

/** What netd does with namespaces: the seam its unit tests fake. */
export interface NetnsOps {
  exists(name: string): Promise<boolean>;
  /** Creates netns `name` (lo up) and returns its path. */
  create(name: string): Promise<string>;
  /** Deletes netns `name`; one already gone counts as deleted. */
  delete(name: string): Promise<void>;
  /** Names of the vmlet-owned namespaces that exist now. */
  list(): Promise<string[]>;
}

export class NetnsManager implements NetnsOps {
  private readonly logger: Logger;
  private readonly timeoutMs: number;
  private readonly ipPath: string;
  /** Set once /run/netns is known to be the shared mount `ip netns add` makes of it. */
  private runDirReady = false;

  constructor(options: NetnsManagerOptions = {}) {
    this.logger = options.logger ?? silentLogger;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.ipPath = options.ipPath ?? 'ip';
  }

  path(name: string): string {
    return netnsPath(name);
  }

  /** Whether `name` exists and is a live namespace (not a leftover empty file). */
  async exists(name: string): Promise<boolean> {
    try {
      return (await statfs(netnsPath(name))).type === NSFS_MAGIC;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  /**
   * Creates netns `name` with `lo` up and returns its path. AlreadyExistsError if it exists; a
   * leftover empty file from a crash half-way through an earlier create is replaced.
   */
  async create(name: string): Promise<string> {
    const path = netnsPath(name);
    if (await this.exists(name)) throw new AlreadyExistsError(`netns ${name} already exists`);
    await unlink(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    const runDirReady = await this.runDirIsMounted();
    if (runDirReady) {
      // O_EXCL: a concurrent create of the same name loses here, before it can touch anything.
      const file = await open(path, 'wx', 0o444).catch((err: NodeJS.ErrnoException) => {
        throw err.code === 'EEXIST' ? new AlreadyExistsError(`netns ${name} already exists`) : err;
      });
      await file.close();
    }
    try {
      if (runDirReady) {
        // No process: a helper thread makes the namespace, brings lo up and bind-mounts it on the file.
        netnsNative().createNetns(path);
      } else {
        // First namespace since boot: `ip netns add` also turns /run/netns into a shared mount, so
        // namespaces made later show up in other mount namespaces (libvirt's, a CNI plugin's).
        await this.tool(this.ipPath, ['netns', 'add', name]);
        await this.tool(this.ipPath, ['-n', name, 'link', 'set', 'dev', 'lo', 'up']);
      }
    } catch (err) {
      await this.delete(name).catch((cleanupErr) =>
        this.logger.warn({ err: cleanupErr, netns: name }, 'cannot remove half-created netns'),
      );
      throw err;
    }
    this.logger.debug({ netns: name }, 'netns created');
    return path;
  }

  /** Deletes netns `name`; a namespace that is already gone counts as deleted. */
  async delete(name: string): Promise<void> {
    const path = netnsPath(name);
    try {
      await statfs(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    // Unmounts (lazily: QEMU may still hold the namespace open) and removes the file.
    netnsNative().removeNetns(path);
    this.logger.debug({ netns: name }, 'netns deleted');
  }

  /** Names of the vmlet-owned namespaces that exist now. */
  async list(): Promise<string[]> {
    let entries: string[];
    try {
      entries = await readdir(NETNS_RUN_DIR);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    return entries.filter(isVmletNetnsName).sort();
  }

  private async runDirIsMounted(): Promise<boolean> {
    if (this.runDirReady) return true;
    const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
    // Field 5 is the mount point (octal-escaped, but /run/netns has nothing to escape).
    this.runDirReady = mountinfo.split('\n').some((line) => line.split(' ')[4] === NETNS_RUN_DIR);
    return this.runDirReady;
  }

  private async tool(file: string, args: string[]): Promise<void> {
    await runTool(file, args, { timeoutMs: this.timeoutMs });
  }
}
