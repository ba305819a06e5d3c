import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { CancelledError, FailedPreconditionError, InvalidArgumentError, NotFoundError, errorText } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { probeDiskImage, type DiskImageFacts } from './disk_format.js';
import { diskUsage, mountPointOf } from './fs_usage.js';
import { downloadToFile, redactUrl, type DownloadResult } from './http_fetch.js';
import { ImageCatalog } from './image_catalog.js';
import { namesOf, publicRecord, type PullNames } from './image_index.js';
import { parseImageRef, pullKey, repoTagOf, translationKey, type ImageName } from './reference.js';
import { isHttpUrl, translateImageName, type Translation } from './translate.js';
import { progressLogger } from './progress.js';
import type { RegistryCredentials } from './registry/auth.js';
import { loadRegistryHosts } from './registry/hosts.js';
import { imageSourceOf, toRegistryReference, type ImageSource } from './registry/name.js';
import { pullContainerDisk } from './registry/pull.js';
import { SharedPulls } from './shared_pulls.js';
import { TranslationDirectory } from './translation_dir.js';
import type { ImageFsInfo, ImageRecord } from './types.js';

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
  /** Clock in ms for the ImageFsInfo reuse (default Date.now); tests move it. */
  now?: () => number;
}

export interface PullOptions {
  signal?: AbortSignal;
  /** Registry credentials (CRI AuthConfig); used by the pull that starts the download. */
  credentials?: RegistryCredentials;
}

/**
 * How long an ImageFsInfo answer is reused while no pull or removal has finished: walking the
 * image dir costs 1–4 ms, crictl ps and kubelet's image GC ask often, and a pull still writing
 * its temporary file shows up at most this late (containerd also answers from a periodic sync).
 */
export const FS_INFO_MAX_AGE_MS = 5_000;

function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/**
 * VM disk images pulled over http(s) or from OCI registries: the CRI image service's store.
 *
 * Layout under imageDir: `images.json` (the index of names, image_index.ts), `blobs/sha256/<hex>`
 * (verified images, named only by their digest, blob_store.ts), `tmp/` (downloads in progress;
 * emptied at init); image_catalog.ts keeps index and blobs in step, crash-safe by ordering.
 * Names never become paths. This facade resolves names to sources, runs the downloads (outside
 * the catalog's lock; concurrent pulls of a name share one, shared_pulls.ts) and answers queries.
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
  private readonly log: Logger;
  private readonly translations: TranslationDirectory | undefined;
  private readonly catalog: ImageCatalog;
  private readonly pulls = new SharedPulls<ImageRecord>((record) => ({ ...record, repoTags: [...record.repoTags], repoDigests: [...record.repoDigests] }));
  private state: 'new' | 'ready' | 'closed' = 'new';
  /** The last ImageFsInfo measurement (fsInfo); dropped when a pull or removal finishes. */
  private fsInfoCache: { at: number; value: Promise<ImageFsInfo> } | undefined;

  constructor(private readonly opts: ImageStoreOptions) {
    this.dir = resolve(opts.imageDir);
    this.log = (opts.logger ?? silentLogger).child({ component: 'image' });
    this.catalog = new ImageCatalog(this.dir, this.log);
    this.translations = opts.translationsDir ? new TranslationDirectory(resolve(opts.translationsDir), this.log) : undefined;
  }

  /** Creates the layout, removes leftovers of an earlier run and loads the index. */
  async init(): Promise<void> {
    if (this.state !== 'new') throw new FailedPreconditionError('image store already initialized');
    await this.catalog.open();
    this.state = 'ready';
    this.log.info({ dir: this.dir, images: this.catalog.index.size }, 'image store ready');
  }

  /** Cancels running pulls and waits until they have cleaned up. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    await this.pulls.cancelAll(new CancelledError('image store is closing'));
    await this.catalog.idle();
  }

  /**
   * Makes the image `name` available and returns it. Concurrent pulls of one name share one
   * download; a caller's signal only cancels the download when no other caller still waits for it.
   */
  async pull(name: string, options: PullOptions = {}): Promise<ImageRecord> {
    this.ensureReady();
    const ref = parseImageRef(name);
    if (ref.kind === 'id') {
      const img = this.catalog.index.get(ref.id);
      if (img) return publicRecord(img);
      throw new NotFoundError(`image ${ref.id} is not present and cannot be pulled by id; pull it by name`);
    }
    const what = JSON.stringify(name);
    try {
      return await this.pulls.join(pullKey(ref.name), (signal) => this.runPull(name, ref.name, signal, options.credentials), what, options.signal);
    } finally {
      this.fsInfoCache = undefined;
    }
  }

  /** Images, optionally only the one `filter.image` refers to. */
  list(filter?: { image?: string }): ImageRecord[] {
    this.ensureReady();
    if (filter?.image) {
      const img = this.catalog.index.lookup(parseImageRef(filter.image));
      return img ? [publicRecord(img)] : [];
    }
    return this.catalog.index.sorted().map(publicRecord);
  }

  /**
   * The image `ref` names: an id (`sha256:<hex>` or bare hex), `name` (= `name:latest`),
   * `name:tag`, or `name@sha256:<hex>`.
   */
  status(ref: string): ImageRecord | undefined {
    this.ensureReady();
    const img = this.catalog.index.lookup(parseImageRef(ref));
    return img ? publicRecord(img) : undefined;
  }

  /**
   * Removes what `ref` names: by id the whole image; by name that tag (or, for `name@sha256:…`,
   * that digest and the repo's tags on that image). An image left without any name is deleted
   * with its blob. Removing something absent is not an error.
   */
  async remove(ref: string): Promise<void> {
    this.ensureReady();
    try {
      await this.catalog.remove(parseImageRef(ref), ref);
    } finally {
      this.fsInfoCache = undefined;
    }
  }

  /**
   * Usage of the filesystem holding the image directory, as CRI ImageFsInfo reports it; an
   * answer younger than FS_INFO_MAX_AGE_MS is reused (its timestamp says when it was measured)
   * unless a pull or removal finished since, and concurrent calls share one measurement.
   */
  fsInfo(): Promise<ImageFsInfo> {
    try {
      this.ensureReady();
    } catch (err) {
      return Promise.reject(err);
    }
    const now = (this.opts.now ?? Date.now)();
    const cached = this.fsInfoCache;
    if (cached && now - cached.at < FS_INFO_MAX_AGE_MS) return cached.value;
    const entry = { at: now, value: this.measureFs() };
    this.fsInfoCache = entry;
    // A failed measurement is not kept.
    entry.value.catch(() => {
      if (this.fsInfoCache === entry) this.fsInfoCache = undefined;
    });
    return entry.value;
  }

  private async measureFs(): Promise<ImageFsInfo> {
    const [mountpoint, usage] = await Promise.all([mountPointOf(this.dir), diskUsage(this.dir)]);
    return { mountpoint, usedBytes: usage.bytes, inodesUsed: usage.inodes, timestampNs: nowNs() };
  }

  /** The directory of the image disk files (blobPath's), e.g. to check who can reach it. */
  blobDir(): string {
    return this.catalog.blobs.dir;
  }

  /** Path of an image's disk file, for building a VM disk on top of it. */
  blobPath(id: string): string {
    this.ensureReady();
    const ref = parseImageRef(id);
    if (ref.kind !== 'id') throw new InvalidArgumentError(`${JSON.stringify(id)} is not an image id`);
    if (!this.catalog.index.has(ref.id)) throw new NotFoundError(`image ${ref.id} is not present`);
    return this.catalog.blobs.pathOf(ref.id);
  }

  // ---- internals ----

  private ensureReady(): void {
    if (this.state === 'new') throw new FailedPreconditionError('image store is not initialized');
    if (this.state === 'closed') throw new FailedPreconditionError('image store is closed');
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

  private async runPull(nameText: string, name: ImageName, signal: AbortSignal, credentials: RegistryCredentials | undefined): Promise<ImageRecord> {
    if ((await this.sourceOf(name)) === 'registry') return this.runRegistryPull(nameText, name, signal, credentials);
    // Content we already hold is all a digest-pinned name needs.
    if (name.digest !== undefined && this.catalog.index.has(name.digest)) {
      const record = await this.catalog.record(namesOf(name), name.digest!, undefined);
      if (record) return record;
    }
    const translation = await this.resolveUrl(name);
    const sourceUrl = redactUrl(translation.url);
    // Ask the source "changed since?" for a tag we hold from the same URL. Never for a digest
    // pull: a 304 would say nothing about whether the local copy has that digest.
    const current = name.digest === undefined ? this.catalog.index.lookup({ kind: 'name', name }) : undefined;
    let conditional =
      current && current.sourceUrl === sourceUrl && (current.etag !== undefined || current.lastModified !== undefined)
        ? { etag: current.etag, lastModified: current.lastModified }
        : undefined;
    this.log.info({ image: nameText, url: sourceUrl, translation: translation.source, transport: translation.transportName }, 'pulling image');

    // Two rounds at most: a 304 for an image removed meanwhile means downloading it after all.
    for (;;) {
      const tmp = this.catalog.blobs.tempPath('pull');
      try {
        const result = await this.download(nameText, translation, tmp, signal, conditional);
        if (result.notModified) {
          const record = await this.catalog.record(namesOf(name), current!.id, undefined, sourceUrl);
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
        const known = this.catalog.index.get(id);
        const facts: DiskImageFacts = known
          ? { format: known.format, virtualSize: known.virtualSize }
          : await probeDiskImage(tmp, { qemuImg: this.opts.qemuImg ?? 'qemu-img', timeoutMs: this.opts.qemuImgTimeoutMs ?? 30_000 });
        if (signal.aborted) throw signal.reason;
        const validators = { ...(result.etag !== undefined ? { etag: result.etag } : {}), ...(result.lastModified !== undefined ? { lastModified: result.lastModified } : {}) };
        const record = await this.catalog.record(namesOf(name), id, { tmp, facts, size: BigInt(result.size), validators }, sourceUrl);
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
      const held = this.catalog.index.byManifest(name.digest);
      if (held) {
        const record = await this.catalog.record(namesFor(name.digest!), held.id, undefined);
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
          tmpDir: this.catalog.blobs.tmpDir,
          maxBytes: this.opts.maxImageBytes,
          maxBytesName: 'the maximum image size (--max-image-size)',
          freeBytes: () => this.catalog.blobs.freeBytes(),
          holdsManifest: (digest) => reuse && this.catalog.index.byManifest(digest) !== undefined,
          onProgress: this.countingBytes(progressLogger(this.log, { image: nameText }, this.opts.progressIntervalMs ?? 5000)),
        });
        if (result.held) {
          const held = this.catalog.index.byManifest(result.manifestDigest);
          const record = held ? await this.catalog.record(namesFor(result.manifestDigest), held.id, undefined) : undefined;
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
        const known = this.catalog.index.get(id);
        const facts: DiskImageFacts = known
          ? { format: known.format, virtualSize: known.virtualSize }
          : await probeDiskImage(diskPath, { qemuImg: this.opts.qemuImg ?? 'qemu-img', timeoutMs: this.opts.qemuImgTimeoutMs ?? 30_000 });
        if (signal.aborted) throw signal.reason;
        const record = await this.catalog.record(namesFor(result.manifestDigest), id, { tmp: diskPath!, facts, size: BigInt(result.diskSize) }, redactUrl(sourceOf(result.manifestDigest)));
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
      freeBytes: () => this.catalog.blobs.freeBytes(),
      conditional,
      onProgress,
    });
  }
}
