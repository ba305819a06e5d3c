/**
 * The host side of a VM's volumes: its export directory <volumesDir>/<id> with `ro/` and `rw/`
 * (the sources of its two virtiofs shares, plan.ts), made before QEMU starts, and one bind mount
 * per CRI mount inside them, made at CreateContainer (warm VMs: after QEMU started, see below).
 *
 * Why bind mounts into one directory per VM: shares are fixed when the VM starts (vmlet does not
 * hot-plug vhost-user devices), but virtiofsd looks paths up at every request, so what is mounted
 * inside its source later is served too. virtiofsd (started by libvirt) pivots into its source in
 * a mount namespace of its own made a slave (MS_SLAVE|MS_REC) of the host's; the host's `/` is
 * private on these machines, so the volumes directory is made a shared mount of its own first:
 * mounts made under it on the host then propagate into every virtiofsd's namespace, unmounts too.
 *
 * Read-only: `ro/` is a read-only bind mount of `ro-stage/` (same peer group, so an entry mounted
 * in `ro-stage/` shows in `ro/` too), and every read-only entry is a read-only bind mount itself:
 * the guest's writes through `vmlet-ro` end in EROFS on the host. vmlet makes its mount points in
 * `ro-stage/`, which is writable and not shared with the guest.
 *
 * A bind mount's source is the object that was checked, not a path looked up again: the resolved
 * path is opened O_PATH|O_NOFOLLOW, the fd's /proc path must still name the resolved path, and
 * mount(8) gets that fd (`/proc/self/fd/3`, no canonicalisation), so a symlink swapped in after
 * the check is never followed. Nothing here ever removes recursively what still has a mount in it.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdir, open, readdir, readFile, readlink, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, errorText } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Share } from '../../libvirt/domain_spec.js';
import { vmShares, type ExportEntry } from './plan.js';

/** The host calls a container's volumes need (a fake in tests). */
export interface VolumeHost {
  /** Makes VM `id`'s export directory (empty) and returns its shares for the domain XML. */
  prepare(id: string): Promise<Share[]>;
  /** Binds each entry into VM `id`'s export directory; InvalidArgumentError names a mount that cannot be. */
  bind(id: string, entries: readonly ExportEntry[]): Promise<void>;
  /** Unmounts everything in VM `id`'s export directory and removes it; nothing to do is fine. */
  release(id: string): Promise<void>;
  /** Ids with an export directory (reconcile removes those nobody owns). */
  list(): Promise<string[]>;
  /** At daemon stop: with no export left, the volumes directory's own mounts go too. */
  close(): Promise<void>;
}

// Not in Node's fs.constants: Linux's O_PATH (x86-64, arm64 and most others).
const O_PATH = 0o10000000;
const ID = /^[0-9a-f]{64}$/;
/** Where vmlet makes the read-only share's mount points; `ro/` is its read-only view. */
const RO_STAGE = 'ro-stage';

export class MountVolumeHost implements VolumeHost {
  private sharedRoot: Promise<void> | undefined;

  constructor(
    private readonly volumesDir: string,
    private readonly logger: Logger,
  ) {}

  async prepare(id: string): Promise<Share[]> {
    await this.ensureSharedRoot();
    const dir = this.dirOf(id);
    for (const sub of [RO_STAGE, 'ro', 'rw']) await mkdir(join(dir, sub), { recursive: true, mode: 0o700 });
    const ro = join(dir, 'ro');
    if (!(await readMountInfo()).some((m) => m.mountPoint === ro)) {
      await run('mount', ['--bind', '--no-canonicalize', join(dir, RO_STAGE), ro]);
      await run('mount', ['-o', 'remount,bind,ro,nosuid,nodev', '--no-canonicalize', ro]);
    }
    return vmShares(dir);
  }

  async bind(id: string, entries: readonly ExportEntry[]): Promise<void> {
    await this.ensureSharedRoot();
    for (const e of entries) {
      const target = join(this.dirOf(id), e.share === 'ro' ? RO_STAGE : 'rw', e.entry);
      const handle = await open(e.source, O_PATH | constants.O_NOFOLLOW).catch((err: NodeJS.ErrnoException) => {
        throw new InvalidArgumentError(`${e.name}: host path ${JSON.stringify(e.source)} cannot be opened: ${err.code ?? err.message}`);
      });
      try {
        const st = await handle.stat();
        const now = await readlink(`/proc/self/fd/${handle.fd}`);
        if (now !== e.source || (e.kind === 'dir' ? !st.isDirectory() : !st.isFile())) {
          throw new InvalidArgumentError(`${e.name}: host path ${JSON.stringify(e.source)} changed while it was being mounted`);
        }
        if (e.kind === 'dir') await mkdir(target, { mode: 0o700 });
        else await writeFile(target, '', { flag: 'wx', mode: 0o600 });
        await this.bindWithFlags(`${id}-${e.entry}`, e, handle.fd, target);
      } finally {
        await handle.close();
      }
    }
  }

  /**
   * mount(8) makes `--bind -o ro` in two steps, a bind then a remount, and a remount does not
   * propagate: the copies in ro/ and in virtiofsd's namespace would stay writable (and without
   * nodev). So the flags are set on a bind in the private staging directory first, and that mount,
   * already read-only/nodev/nosuid, is bound to the target: every copy is a clone with its flags.
   */
  private async bindWithFlags(name: string, e: ExportEntry, fd: number, target: string): Promise<void> {
    const point = join(this.stageDir, name);
    if (e.kind === 'dir') await mkdir(point, { mode: 0o700 });
    else await writeFile(point, '', { flag: 'wx', mode: 0o600 });
    try {
      await run('mount', ['--bind', '--no-canonicalize', '-o', e.readonly ? 'ro,nosuid,nodev' : 'nosuid,nodev', '/proc/self/fd/3', point], fd);
      try {
        await run('mount', ['--bind', '--no-canonicalize', point, target]);
      } finally {
        await run('umount', [point]);
      }
    } finally {
      await rm(point, { recursive: false, force: true }).catch(() => rmdir(point));
    }
  }

  async release(id: string): Promise<void> {
    if (!ID.test(id)) throw new Error(`not a VM id: ${JSON.stringify(id)}`);
    const dir = this.dirOf(id);
    // Newest first, looked up again after each one: an unmount propagates to the mount's peers
    // (an entry of ro-stage/ goes from ro/ too), so a list taken once would go stale.
    let points = await mountsUnder(dir);
    for (let budget = 2 * points.length; points.length > 0 && budget > 0; budget--, points = await mountsUnder(dir)) {
      const point = points[points.length - 1]!;
      await run('umount', [point]).catch(async (err: unknown) => {
        this.logger.warn({ err: errorText(err), mount: point }, 'volume busy; detaching it lazily');
        await run('umount', ['--lazy', point]);
      });
    }
    const left = await mountsUnder(dir);
    if (left.length > 0) throw new Error(`volumes of VM ${id} still mounted: ${left.join(', ')}`);
    await rm(dir, { recursive: true, force: true });
  }

  async list(): Promise<string[]> {
    return (await readdir(this.volumesDir).catch(() => [] as string[])).filter((n) => ID.test(n));
  }

  async close(): Promise<void> {
    // With VMs left, the shared mount stays: their virtiofsd namespaces are slaves of it, and a
    // new one made by the next daemon would not propagate into them.
    if ((await this.list()).length > 0) return;
    for (const dir of [this.stageDir, this.volumesDir]) {
      const mounts = await readMountInfo();
      if (mounts.some((m) => m.mountPoint.startsWith(`${dir}/`))) continue;
      if (mounts.some((m) => m.mountPoint === dir)) await run('umount', [dir]);
    }
    this.sharedRoot = undefined;
  }

  /** Private (no propagation): where an entry's mount gets its flags before it is bound into a share. */
  private get stageDir(): string {
    return `${this.volumesDir}-stage`;
  }

  private dirOf(id: string): string {
    return join(this.volumesDir, id);
  }

  /**
   * The volumes directory as a shared mount of its own and the staging directory as a private one,
   * once per daemon (kept across restarts); staging leftovers of a crash are unmounted and removed.
   */
  private ensureSharedRoot(): Promise<void> {
    this.sharedRoot ??= (async () => {
      await mkdir(this.volumesDir, { recursive: true, mode: 0o700 });
      await mkdir(this.stageDir, { recursive: true, mode: 0o700 });
      const mounts = await readMountInfo();
      const own = mounts.find((m) => m.mountPoint === this.volumesDir);
      if (!own) await run('mount', ['--bind', '--no-canonicalize', this.volumesDir, this.volumesDir]);
      if (!own?.shared) await run('mount', ['--make-shared', this.volumesDir]);
      const stage = mounts.find((m) => m.mountPoint === this.stageDir);
      if (!stage) await run('mount', ['--bind', '--no-canonicalize', this.stageDir, this.stageDir]);
      if (!stage || stage.shared) await run('mount', ['--make-private', this.stageDir]);
      for (const point of (await mountsUnder(this.stageDir)).reverse()) await run('umount', ['--lazy', point]);
      for (const name of await readdir(this.stageDir)) await rm(join(this.stageDir, name), { recursive: false, force: true }).catch(() => rmdir(join(this.stageDir, name)));
    })().catch((err: unknown) => {
      this.sharedRoot = undefined;
      throw err;
    });
    return this.sharedRoot;
  }
}

interface MountInfo {
  mountPoint: string;
  shared: boolean;
}

/** This process's mounts (/proc/self/mountinfo), mount points decoded (\040 and the like). */
async function readMountInfo(): Promise<MountInfo[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((line) => {
      const fields = line.split(' ');
      const sep = fields.indexOf('-');
      const optional = fields.slice(6, sep < 0 ? fields.length : sep);
      return { mountPoint: decodeMountPath(fields[4] ?? ''), shared: optional.some((o) => o.startsWith('shared:')) };
    });
}

function decodeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Mount points strictly inside `dir`, in mount order. */
async function mountsUnder(dir: string): Promise<string[]> {
  return (await readMountInfo()).map((m) => m.mountPoint).filter((p) => p.startsWith(`${dir}/`));
}

/** Runs a util-linux tool; `fd` (if given) becomes the child's fd 3. */
function run(cmd: string, args: string[], fd?: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'ignore', 'pipe'];
    if (fd !== undefined) stdio.push(fd);
    const child = spawn(cmd, args, { stdio });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d.slice(0, 4096)));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${stderr.trim()}`))));
  });
}
