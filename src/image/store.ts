import { chmod, mkdir, readFile, readdir, rename, rm, statfs, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { writeFileAtomic, fsyncDir, TEMP_PREFIX } from '../store/atomic_file.js';
import {
  CancelledError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  errorText,
} from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { decodeIndex, encodeIndex } from './index_codec.js';
import { probeDiskImage, type DiskImageFacts } from './disk_format.js';
import { diskUsage, mountPointOf } from './fs_usage.js';
import { downloadToFile, redactUrl, type DownloadResult } from './http_fetch.js';
import {
  hexOfId,
  parseImageName,
  parseImageRef,
  pullKey,
  repoDigestOf,
  repoTagOf,
  translationKey,
  type ImageName,
  type ImageRef,
} from './reference.js';
import { isHttpUrl, translateImageName, type Translation } from './translate.js';
import { progressLogger } from './progress.js';
import type { RegistryCredentials } from './registry/auth.js';
import { loadRegistryHosts } from './registry/hosts.js';
import { imageSourceOf, toRegistryReference, type ImageSource } from './registry/name.js';
import { pullContainerDisk } from './registry/pull.js';
import { TranslationDirectory } from './translation_dir.js';
import type { ImageFsInfo, ImageRecord, StoredImage } from './types.js';

export type { ImageRecord, ImageFsInfo } from './types.js';

export interface ImageStoreOptions {
  /** Directory owned by the store: index, blobs and in-progress downloads. */
  imageDir: string;
  /** Virtlet-style translation config directory; without it only http(s) URLs can be pulled. */
  translationsDir?: string;
  logger?: Logger;
  /** qemu-img binary (default: `qemu-img` from PATH). */
  qemuImg?: string;
  qemuImgTimeoutMs?: number;
  /** A download with no data for this long fails (default 60 s). */
  stallTimeoutMs?: number;
  /** Largest image accepted, in bytes (default: no limit). */
  maxImageBytes?: number;
  /** How often a running download logs its progress (default 5 s). */
  progressIntervalMs?: number;
  /** containerd-style registry host config (`<dir>/<host>/hosts.toml`); absent: registries over https. */
  registryConfigDir?: string;
}

export interface PullOptions {
  signal?: AbortSignal;
  /** Registry credentials (CRI AuthConfig); used by the pull that starts the download. */
  credentials?: RegistryCredentials;
}

/** The names one pull records on its image. */
interface PullNames {
  tag?: string;
  digestRef?: string;
}

function namesOf(name: ImageName): PullNames {
  const names: PullNames = {};
  const tag = repoTagOf(name);
  if (tag !== undefined) names.tag = tag;
  const digestRef = repoDigestOf(name);
  if (digestRef !== undefined) names.digestRef = digestRef;
  return names;
}

function digestOfRepoDigest(repoDigest: string): string {
  return repoDigest.slice(repoDigest.lastIndexOf('@') + 1);
}

interface SharedPull {
  promise: Promise<ImageRecord>;
  controller: AbortController;
  waiters: number;
}

const INDEX_FILE = 'images.json';

function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

function publicRecord(img: StoredImage): ImageRecord {
  return {
    id: img.id,
    repoTags: [...img.repoTags],
    repoDigests: [...img.repoDigests],
    size: img.size,
    virtualSize: img.virtualSize,
    format: img.format,
    sourceUrl: img.sourceUrl,
    pulledAtNs: img.pulledAtNs,
  };
}

function cloneImage(img: StoredImage): StoredImage {
  return { ...img, repoTags: [...img.repoTags], repoDigests: [...img.repoDigests] };
}

function repoOfTag(repoTag: string): string | undefined {
  try {
    return parseImageName(repoTag).repo;
  } catch {
    return undefined;
  }
}

/**
 * Content-addressed store of VM disk images pulled over http(s).
 *
 * Layout under imageDir: `images.json` (the index, replaced atomically), `blobs/sha256/<hex>`
 * (verified images, named only by their digest), `tmp/` (downloads in progress; emptied at init).
 * Names never become paths. Mutations of the index are serialized; downloads run outside the
 * lock. Crash safety by ordering: a blob is renamed into place before the index names it, and
 * the index forgets an image before its blob is deleted, so a crash leaves at most an unnamed
 * blob, which init() deletes.
 *
 * One store per imageDir: two processes on one directory would delete each other's blobs.
 */
export class ImageStore {
  /** Bytes received by every download since start (http and registry), for the metrics endpoint. */
  private pulledBytes = 0;

  get pulledBytesTotal(): number {
    return this.pulledBytes;
  }

  /** Wraps a download's progress callback (cumulative bytes) so its growth adds to pulledBytesTotal. */
  private countingBytes(inner: (received: number, total: number | undefined) => void): (received: number, total: number | undefined) => void {
    let seen = 0;
    return (received, total) => {
      if (received > seen) {
        this.pulledBytes += received - seen;
        seen = received;
      }
      inner(received, total);
    };
  }

  private readonly dir: string;
  private readonly blobsDir: string;
  private readonly tmpDir: string;
  private readonly indexPath: string;
  private readonly log: Logger;
  private readonly translations: TranslationDirectory | undefined;
  private images = new Map<string, StoredImage>();
  private readonly inflight = new Map<string, SharedPull>();
  private lockTail: Promise<unknown> = Promise.resolve();
  private state: 'new' | 'ready' | 'closed' = 'new';

  constructor(private readonly opts: ImageStoreOptions) {
    this.dir = resolve(opts.imageDir);
    this.blobsDir = join(this.dir, 'blobs', 'sha256');
    this.tmpDir = join(this.dir, 'tmp');
    this.indexPath = join(this.dir, INDEX_FILE);
    this.log = (opts.logger ?? silentLogger).child({ component: 'image' });
    this.translations = opts.translationsDir ? new TranslationDirectory(resolve(opts.translationsDir), this.log) : undefined;
  }

  /** Creates the layout, removes leftovers of an earlier run and loads the index. */
  async init(): Promise<void> {
    if (this.state !== 'new') throw new FailedPreconditionError('image store already initialized');
    await mkdir(this.blobsDir, { recursive: true, mode: 0o755 });
    await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.tmpDir, { mode: 0o700 });
    for (const name of await readdir(this.dir)) {
      if (name.startsWith(TEMP_PREFIX)) await rm(join(this.dir, name), { force: true });
    }

    let text: string | undefined;
    try {
      text = await readFile(this.indexPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    // A damaged index fails init (InternalError) rather than being guessed at: deleting blobs
    // because the index could not be read would destroy disks that VMs are built on.
    const loaded = text === undefined ? [] : decodeIndex(text);

    const blobNames = new Set(await readdir(this.blobsDir));
    let dropped = false;
    for (const img of loaded) {
      if (blobNames.has(hexOfId(img.id))) {
        this.images.set(img.id, img);
      } else {
        dropped = true;
        this.log.warn({ id: img.id, tags: img.repoTags }, 'image blob is missing; forgetting the image');
      }
    }
    if (dropped) await this.persist();
    for (const name of blobNames) {
      const known = /^[0-9a-f]{64}$/.test(name) && this.images.has(`sha256:${name}`);
      if (known) continue;
      if (/^[0-9a-f]{64}$/.test(name) || name.startsWith(TEMP_PREFIX)) {
        this.log.info({ blob: name }, 'removing unreferenced image blob');
        await rm(join(this.blobsDir, name), { force: true });
      } else {
        this.log.warn({ file: name }, 'unexpected file in the image blob directory; leaving it alone');
      }
    }
    this.state = 'ready';
    this.log.info({ dir: this.dir, images: this.images.size }, 'image store ready');
  }

  /** Cancels running pulls and waits until they have cleaned up. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    const pulls = [...this.inflight.values()];
    for (const p of pulls) p.controller.abort(new CancelledError('image store is closing'));
    await Promise.allSettled(pulls.map((p) => p.promise));
    await this.lockTail;
  }

  /**
   * Makes the image `name` available and returns it. Concurrent pulls of one name share one
   * download; a caller's signal only cancels the download when no other caller still waits for it.
   */
  async pull(name: string, options: PullOptions = {}): Promise<ImageRecord> {
    this.ensureReady();
    const ref = parseImageRef(name);
    if (ref.kind === 'id') {
      const img = this.images.get(ref.id);
      if (img) return publicRecord(img);
      throw new NotFoundError(`image ${ref.id} is not present and cannot be pulled by id; pull it by name`);
    }
    const key = pullKey(ref.name);
    let shared = this.inflight.get(key);
    if (!shared) {
      shared = this.startPull(name, ref.name, key, options.credentials);
      this.inflight.set(key, shared);
    }
    return this.awaitPull(shared, key, name, options.signal);
  }

  /** Images, optionally only the one `filter.image` refers to. */
  list(filter?: { image?: string }): ImageRecord[] {
    this.ensureReady();
    if (filter?.image) {
      const img = this.lookup(parseImageRef(filter.image));
      return img ? [publicRecord(img)] : [];
    }
    return [...this.images.values()]
      .sort((a, b) => (a.pulledAtNs < b.pulledAtNs ? -1 : a.pulledAtNs > b.pulledAtNs ? 1 : a.id < b.id ? -1 : 1))
      .map(publicRecord);
  }

  /**
   * The image `ref` names: an id (`sha256:<hex>` or bare hex), `name` (= `name:latest`),
   * `name:tag`, or `name@sha256:<hex>`.
   */
  status(ref: string): ImageRecord | undefined {
    this.ensureReady();
    const img = this.lookup(parseImageRef(ref));
    return img ? publicRecord(img) : undefined;
  }

  /**
   * Removes what `ref` names: by id the whole image; by name that tag (or, for `name@sha256:…`,
   * that digest and the repo's tags on that image). An image left without any name is deleted
   * with its blob. Removing something absent is not an error.
   */
  async remove(ref: string): Promise<void> {
    this.ensureReady();
    const parsed = parseImageRef(ref);
    await this.withLock(async () => {
      const img = this.lookup(parsed);
      if (!img) return;
      const before = cloneImage(img);
      if (parsed.kind === 'id') {
        img.repoTags = [];
        img.repoDigests = [];
      } else {
        const { name } = parsed;
        if (name.digest === undefined) {
          const tag = repoTagOf(name)!;
          img.repoTags = img.repoTags.filter((t) => t !== tag);
        } else {
          const digestRef = repoDigestOf(name)!;
          img.repoDigests = img.repoDigests.filter((d) => d !== digestRef);
          img.repoTags = img.repoTags.filter((t) => repoOfTag(t) !== name.repo);
        }
      }
      try {
        await this.applyAndCollect([img.id]);
      } catch (err) {
        this.images.set(before.id, before);
        throw err;
      }
      this.log.info({ ref, id: img.id }, 'image reference removed');
    });
  }

  /** Usage of the filesystem holding the image directory, as CRI ImageFsInfo reports it. */
  async fsInfo(): Promise<ImageFsInfo> {
    this.ensureReady();
    const [mountpoint, usage] = await Promise.all([mountPointOf(this.dir), diskUsage(this.dir)]);
    return { mountpoint, usedBytes: usage.bytes, inodesUsed: usage.inodes, timestampNs: nowNs() };
  }

  /** The directory of the image disk files (blobPath's), e.g. to check who can reach it. */
  blobDir(): string {
    return this.blobsDir;
  }

  /** Path of an image's disk file, for building a VM disk on top of it. */
  blobPath(id: string): string {
    this.ensureReady();
    const ref = parseImageRef(id);
    if (ref.kind !== 'id') throw new InvalidArgumentError(`${JSON.stringify(id)} is not an image id`);
    if (!this.images.has(ref.id)) throw new NotFoundError(`image ${ref.id} is not present`);
    return join(this.blobsDir, hexOfId(ref.id));
  }

  // ---- internals ----

  private ensureReady(): void {
    if (this.state === 'new') throw new FailedPreconditionError('image store is not initialized');
    if (this.state === 'closed') throw new FailedPreconditionError('image store is closed');
  }

  private withLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lockTail.then(fn, fn);
    this.lockTail = run.catch(() => {});
    return run;
  }

  private lookup(ref: ImageRef): StoredImage | undefined {
    if (ref.kind === 'id') return this.images.get(ref.id);
    const { name } = ref;
    if (name.digest !== undefined) {
      const digestRef = repoDigestOf(name)!;
      // A registry image is named by its manifest digest, which is not its id.
      for (const candidate of this.images.values()) if (candidate.repoDigests.includes(digestRef)) return candidate;
      const img = this.images.get(name.digest);
      if (!img) return undefined;
      // Content is what a digest names; it matches if the repo refers to this image at all.
      const named = img.repoDigests.includes(digestRef) || img.repoTags.some((t) => repoOfTag(t) === name.repo);
      return named ? img : undefined;
    }
    const tag = repoTagOf(name)!;
    for (const img of this.images.values()) if (img.repoTags.includes(tag)) return img;
    return undefined;
  }

  private async persist(): Promise<void> {
    await writeFileAtomic(this.indexPath, encodeIndex(this.images.values()), { mode: 0o600 });
  }

  /**
   * Drops images among `candidates` that have no name left, writes the index, then deletes the
   * dropped images' blobs (index first: a crash in between leaves only an unnamed blob).
   */
  private async applyAndCollect(candidates: Iterable<string>): Promise<void> {
    const dropped: StoredImage[] = [];
    for (const id of new Set(candidates)) {
      const img = this.images.get(id);
      if (img && img.repoTags.length === 0 && img.repoDigests.length === 0) {
        this.images.delete(id);
        dropped.push(img);
      }
    }
    try {
      await this.persist();
    } catch (err) {
      for (const img of dropped) this.images.set(img.id, img);
      throw err;
    }
    for (const img of dropped) {
      await unlink(join(this.blobsDir, hexOfId(img.id))).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') this.log.warn({ id: img.id, err: errorText(err) }, 'cannot delete image blob');
      });
      this.log.info({ id: img.id }, 'image deleted');
    }
  }

  private startPull(nameText: string, name: ImageName, key: string, credentials: RegistryCredentials | undefined): SharedPull {
    const controller = new AbortController();
    const promise = this.runPull(nameText, name, controller.signal, credentials).finally(() => {
      if (this.inflight.get(key) === shared) this.inflight.delete(key);
    });
    const shared: SharedPull = { controller, waiters: 0, promise };
    // Callers may all have left; the outcome is then nobody's to observe.
    promise.catch(() => {});
    return shared;
  }

  private awaitPull(shared: SharedPull, key: string, nameText: string, signal: AbortSignal | undefined): Promise<ImageRecord> {
    shared.waiters++;
    return new Promise<ImageRecord>((resolvePull, rejectPull) => {
      let settled = false;
      const onAbort = (): void => {
        if (settled) return;
        settled = true;
        shared.waiters--;
        const cancelled = new CancelledError(`pull of ${JSON.stringify(nameText)} cancelled`);
        if (shared.waiters > 0) {
          rejectPull(cancelled);
          return;
        }
        // Last one out stops the download and returns only once its temp file is gone; a new
        // pull of the same name starts afresh instead of joining the dying one.
        if (this.inflight.get(key) === shared) this.inflight.delete(key);
        shared.controller.abort(cancelled);
        shared.promise.then(
          () => rejectPull(cancelled),
          () => rejectPull(cancelled),
        );
      };
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      shared.promise.then(
        (record) => {
          if (settled) return;
          settled = true;
          shared.waiters--;
          signal?.removeEventListener('abort', onAbort);
          resolvePull({ ...record, repoTags: [...record.repoTags], repoDigests: [...record.repoDigests] });
        },
        (err: unknown) => {
          if (settled) return;
          settled = true;
          shared.waiters--;
          signal?.removeEventListener('abort', onAbort);
          rejectPull(err);
        },
      );
    });
  }

  private async resolveUrl(name: ImageName): Promise<Translation> {
    const snapshot = this.translations ? await this.translations.current() : undefined;
    const found = translateImageName(snapshot?.configs ?? [], name);
    if (found) return found;
    const key = JSON.stringify(translationKey(name));
    const where = this.translations
      ? `no image translation for ${key} in ${this.translations.dir}`
      : `no image translation directory is configured to resolve ${key}`;
    const problems = snapshot && snapshot.problems.length > 0 ? ` (unusable config files: ${snapshot.problems.join('; ')})` : '';
    throw new NotFoundError(`${where}${problems}, and the name is neither an http(s) URL nor a registry reference (host/repository[:tag])`);
  }

  /** Where `name` comes from (see imageSourceOf); undefined when nothing resolves it. */
  async sourceOf(name: ImageName): Promise<ImageSource | undefined> {
    const snapshot = this.translations ? await this.translations.current() : undefined;
    const knows = (n: ImageName): boolean => {
      try {
        return translateImageName(snapshot?.configs ?? [], n) !== undefined;
      } catch {
        return true; // a rule matched but is broken: the translation path reports it
      }
    };
    return imageSourceOf(name, knows, isHttpUrl);
  }

  /** The image some pull recorded under manifest digest `digest` (any repository). */
  private imageByManifest(digest: string): StoredImage | undefined {
    for (const img of this.images.values()) {
      if (img.repoDigests.some((d) => digestOfRepoDigest(d) === digest && img.id !== digest)) return img;
    }
    return undefined;
  }

  private async runPull(nameText: string, name: ImageName, signal: AbortSignal, credentials: RegistryCredentials | undefined): Promise<ImageRecord> {
    if ((await this.sourceOf(name)) === 'registry') return this.runRegistryPull(nameText, name, signal, credentials);
    // Content we already hold is all a digest-pinned name needs.
    if (name.digest !== undefined && this.images.has(name.digest)) {
      const record = await this.withLock(() => this.commit(namesOf(name), name.digest!, undefined));
      if (record) return record;
    }
    const translation = await this.resolveUrl(name);
    const sourceUrl = redactUrl(translation.url);
    // Ask the source "changed since?" for a tag we hold from the same URL. Never for a digest
    // pull: a 304 would say nothing about whether the local copy has that digest.
    const current = name.digest === undefined ? this.lookup({ kind: 'name', name }) : undefined;
    let conditional =
      current && current.sourceUrl === sourceUrl && (current.etag !== undefined || current.lastModified !== undefined)
        ? { etag: current.etag, lastModified: current.lastModified }
        : undefined;
    this.log.info({ image: nameText, url: sourceUrl, translation: translation.source, transport: translation.transportName }, 'pulling image');

    // Two rounds at most: a 304 for an image removed meanwhile means downloading it after all.
    for (;;) {
      const tmp = join(this.tmpDir, `${TEMP_PREFIX}pull-${randomBytes(8).toString('hex')}`);
      try {
        const result = await this.download(nameText, translation, tmp, signal, conditional);
        if (result.notModified) {
          const record = await this.withLock(() => this.commit(namesOf(name), current!.id, undefined, translation.url));
          if (record) {
            this.log.info({ image: nameText, id: record.id }, 'image not modified at its source; kept the local copy');
            return record;
          }
          conditional = undefined;
          continue;
        }
        const id = `sha256:${result.sha256}`;
        if (name.digest !== undefined && name.digest !== id) {
          throw new FailedPreconditionError(`image ${JSON.stringify(nameText)}: downloaded content has digest ${id}, not ${name.digest}`);
        }
        if (signal.aborted) throw signal.reason;
        const known = this.images.get(id);
        const facts: DiskImageFacts = known
          ? { format: known.format, virtualSize: known.virtualSize }
          : await probeDiskImage(tmp, { qemuImg: this.opts.qemuImg ?? 'qemu-img', timeoutMs: this.opts.qemuImgTimeoutMs ?? 30_000 });
        if (signal.aborted) throw signal.reason;
        const record = await this.withLock(() =>
          this.commit(namesOf(name), id, { tmp, facts, size: BigInt(result.size), download: result }, translation.url),
        );
        if (!record) throw new FailedPreconditionError(`image ${id} vanished while it was being recorded`);
        this.log.info({ image: nameText, id, format: record.format, size: record.size.toString() }, 'image pulled');
        return record;
      } catch (err) {
        this.log.warn({ image: nameText, url: sourceUrl, err: errorText(err) }, 'image pull failed');
        throw err;
      } finally {
        await rm(tmp, { force: true });
      }
    }
  }

  /**
   * A containerDisk from a registry. The image id is the sha256 of the disk file, so the same disk
   * pulled over http or from another registry is one image with one blob; the manifest digest is
   * recorded as `repo@sha256:<manifest>` in repoDigests (for tag pulls too, as containerd does).
   */
  private async runRegistryPull(nameText: string, name: ImageName, signal: AbortSignal, credentials: RegistryCredentials | undefined): Promise<ImageRecord> {
    const ref = toRegistryReference(name);
    const namesFor = (manifestDigest: string): PullNames => {
      const names: PullNames = { digestRef: `${name.repo}@${manifestDigest}` };
      const tag = repoTagOf(name);
      if (tag !== undefined) names.tag = tag;
      return names;
    };
    const sourceOf = (manifestDigest: string): string => `oci://${ref.registry}/${ref.repository}@${manifestDigest}`;
    // A manifest digest we already hold content for needs no network at all.
    if (name.digest !== undefined) {
      const held = this.imageByManifest(name.digest);
      if (held) {
        const record = await this.withLock(() => this.commit(namesFor(name.digest!), held.id, undefined));
        if (record) return record;
      }
    }
    const endpoints = await loadRegistryHosts(this.opts.registryConfigDir, ref.registry);
    this.log.info({ image: nameText, endpoints: endpoints.map((e) => `${e.origin}${e.apiPath}`), auth: credentials?.kind ?? 'none' }, 'pulling containerDisk image');
    const started = Date.now();
    let reuse = true;
    for (;;) {
      let diskPath: string | undefined;
      try {
        const result = await pullContainerDisk(ref, {
          endpoints,
          credentials,
          signal,
          stallTimeoutMs: this.opts.stallTimeoutMs ?? 60_000,
          tmpDir: this.tmpDir,
          maxBytes: this.opts.maxImageBytes,
          maxBytesName: 'the maximum image size (--max-image-size)',
          freeBytes: async () => {
            const fs = await statfs(this.tmpDir);
            return fs.bavail * fs.bsize;
          },
          holdsManifest: (digest) => reuse && this.imageByManifest(digest) !== undefined,
          onProgress: this.countingBytes(progressLogger(this.log, { image: nameText }, this.opts.progressIntervalMs ?? 5000)),
        });
        if (result.held) {
          const held = this.imageByManifest(result.manifestDigest);
          const record = held ? await this.withLock(() => this.commit(namesFor(result.manifestDigest), held.id, undefined)) : undefined;
          if (record) {
            this.log.info({ image: nameText, id: record.id, manifest: result.manifestDigest }, 'image manifest unchanged; kept the local copy');
            return record;
          }
          reuse = false; // removed meanwhile: download after all
          continue;
        }
        diskPath = result.diskPath;
        const id = `sha256:${result.diskSha256}`;
        if (signal.aborted) throw signal.reason;
        const known = this.images.get(id);
        const facts: DiskImageFacts = known
          ? { format: known.format, virtualSize: known.virtualSize }
          : await probeDiskImage(diskPath, { qemuImg: this.opts.qemuImg ?? 'qemu-img', timeoutMs: this.opts.qemuImgTimeoutMs ?? 30_000 });
        if (signal.aborted) throw signal.reason;
        const record = await this.withLock(() =>
          this.commit(namesFor(result.manifestDigest), id, { tmp: diskPath!, facts, size: BigInt(result.diskSize) }, sourceOf(result.manifestDigest)),
        );
        if (!record) throw new FailedPreconditionError(`image ${id} vanished while it was being recorded`);
        const seconds = Math.max((Date.now() - started) / 1000, 0.001);
        this.log.info(
          {
            image: nameText,
            id,
            manifest: result.manifestDigest,
            disk: `/${result.diskName}`,
            format: record.format,
            size: record.size.toString(),
            layerBytes: result.layerBytes,
            seconds,
            bytesPerSecond: Math.round(result.layerBytes / seconds),
          },
          'image pulled',
        );
        return record;
      } catch (err) {
        this.log.warn({ image: nameText, err: errorText(err) }, 'image pull failed');
        throw err;
      } finally {
        if (diskPath) await rm(diskPath, { force: true });
      }
    }
  }

  private download(
    nameText: string,
    translation: Translation,
    tmp: string,
    signal: AbortSignal,
    conditional: { etag?: string; lastModified?: string } | undefined,
  ): Promise<DownloadResult> {
    const onProgress = this.countingBytes(progressLogger(this.log, { image: nameText }, this.opts.progressIntervalMs ?? 5000));
    return downloadToFile(translation.url, tmp, {
      transport: translation.transport,
      signal,
      stallTimeoutMs: this.opts.stallTimeoutMs ?? 60_000,
      maxBytes: this.opts.maxImageBytes,
      maxBytesName: 'the maximum image size (--max-image-size)',
      freeBytes: async () => {
        const fs = await statfs(this.tmpDir);
        return fs.bavail * fs.bsize;
      },
      conditional,
      onProgress,
    });
  }

  /**
   * Records `id` under the names of `name` (inside the lock). With `fresh`, its verified temp
   * file becomes the blob unless the blob is already there. Moves the tag off any other image
   * and deletes images left without names. Returns undefined when `id` is neither known nor
   * supplied (it was removed meanwhile).
   */
  private async commit(
    names: PullNames,
    id: string,
    fresh: { tmp: string; facts: DiskImageFacts; size: bigint; download?: DownloadResult } | undefined,
    url?: string,
  ): Promise<ImageRecord | undefined> {
    const snapshot = new Map([...this.images].map(([k, v]) => [k, cloneImage(v)]));
    let img = this.images.get(id);
    let newBlob: string | undefined;
    if (!img) {
      if (!fresh) return undefined;
      newBlob = join(this.blobsDir, hexOfId(id));
      await chmod(fresh.tmp, 0o644);
      await rename(fresh.tmp, newBlob);
      await fsyncDir(this.blobsDir);
      img = {
        id,
        repoTags: [],
        repoDigests: [],
        size: fresh.size,
        virtualSize: fresh.facts.virtualSize,
        format: fresh.facts.format,
        sourceUrl: '',
        pulledAtNs: 0n,
      };
      this.images.set(id, img);
    }
    if (url !== undefined) img.sourceUrl = redactUrl(url);
    img.pulledAtNs = nowNs();
    if (fresh?.download && !fresh.download.notModified) {
      // Validators belong to the URL they came from; a download without them clears old ones.
      if (fresh.download.etag !== undefined) img.etag = fresh.download.etag;
      else delete img.etag;
      if (fresh.download.lastModified !== undefined) img.lastModified = fresh.download.lastModified;
      else delete img.lastModified;
    }

    const touched = new Set<string>([id]);
    const { tag, digestRef } = names;
    if (tag !== undefined) {
      for (const other of this.images.values()) {
        if (other.id !== id && other.repoTags.includes(tag)) {
          other.repoTags = other.repoTags.filter((t) => t !== tag);
          touched.add(other.id);
        }
      }
      if (!img.repoTags.includes(tag)) img.repoTags.push(tag);
    }
    if (digestRef !== undefined && !img.repoDigests.includes(digestRef)) img.repoDigests.push(digestRef);

    try {
      await this.applyAndCollect(touched);
    } catch (err) {
      this.images = snapshot;
      if (newBlob) await rm(newBlob, { force: true });
      throw err;
    }
    return publicRecord(img);
  }
}
