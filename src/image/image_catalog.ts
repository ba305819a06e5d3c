/**
 * The images held: the index of names (image_index.ts) and the blobs (blob_store.ts) kept in
 * step, crash-safe by ordering. A blob is renamed into place before the index names it, and the
 * index forgets an image before its blob is deleted, so a crash leaves at most an unnamed blob,
 * which open() deletes. Every change runs under one lock (downloads run outside it).
 */
import { rm } from 'node:fs/promises';
import type { Logger } from '../log.js';
import type { DiskImageFacts } from './disk_format.js';
import { BlobStore } from './blob_store.js';
import { ImageIndex, publicRecord, type PullNames } from './image_index.js';
import { hexOfId, type ImageRef } from './reference.js';
import type { ImageRecord } from './types.js';

/** A verified download to make an image of. */
export interface FreshBlob {
  tmp: string;
  facts: DiskImageFacts;
  size: bigint;
  /** HTTP validators of the download (absent for a registry pull). */
  validators?: { etag?: string; lastModified?: string };
}

function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

export class ImageCatalog {
  readonly blobs: BlobStore;
  readonly index: ImageIndex;
  private lockTail: Promise<unknown> = Promise.resolve();

  constructor(
    imageDir: string,
    private readonly log: Logger,
  ) {
    this.blobs = new BlobStore(imageDir, log);
    this.index = new ImageIndex(imageDir);
  }

  /**
   * Creates the layout, drops downloads an earlier run left, loads the index: an image whose blob
   * is missing is forgotten, a blob no image names is deleted.
   */
  async open(): Promise<void> {
    const blobNames = await this.blobs.open();
    const loaded = await this.index.read();
    const present = new Set(blobNames);
    let dropped = false;
    for (const img of loaded) {
      if (present.has(hexOfId(img.id))) {
        this.index.keep(img);
      } else {
        dropped = true;
        this.log.warn({ id: img.id, tags: img.repoTags }, 'image blob is missing; forgetting the image');
      }
    }
    if (dropped) await this.index.persist();
    await this.blobs.sweep(blobNames, (id) => this.index.has(id));
  }

  /** Runs `fn` after every change before it (changes never overlap). */
  withLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lockTail.then(fn, fn);
    this.lockTail = run.catch(() => {});
    return run;
  }

  /** Resolves once the changes queued so far are done. */
  idle(): Promise<unknown> {
    return this.lockTail;
  }

  /**
   * Records image `id` under `names` (takes the lock). With `fresh`, its verified temp file
   * becomes the blob unless the blob is already there. Moves the tag off any other image and
   * deletes images left without names. Returns undefined when `id` is neither known nor supplied
   * (it was removed meanwhile). `sourceUrl`: where it came from, any password already hidden.
   */
  record(names: PullNames, id: string, fresh: FreshBlob | undefined, sourceUrl?: string): Promise<ImageRecord | undefined> {
    return this.withLock(async () => {
      const snapshot = this.index.snapshot();
      let img = this.index.get(id);
      let newBlob: string | undefined;
      if (!img) {
        if (!fresh) return undefined;
        newBlob = await this.blobs.adopt(fresh.tmp, id);
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
        this.index.keep(img);
      }
      if (sourceUrl !== undefined) img.sourceUrl = sourceUrl;
      img.pulledAtNs = nowNs();
      if (fresh?.validators) {
        // Validators belong to the URL they came from; a download without them clears old ones.
        if (fresh.validators.etag !== undefined) img.etag = fresh.validators.etag;
        else delete img.etag;
        if (fresh.validators.lastModified !== undefined) img.lastModified = fresh.validators.lastModified;
        else delete img.lastModified;
      }
      const touched = this.index.name(id, names);
      try {
        await this.collect(touched);
      } catch (err) {
        this.index.restore(snapshot);
        if (newBlob) await rm(newBlob, { force: true });
        throw err;
      }
      return publicRecord(img);
    });
  }

  /**
   * Removes what `ref` names (see ImageIndex.unname); an image left without any name is deleted
   * with its blob. Something absent is not an error. `refText`: `ref` as the caller wrote it.
   */
  remove(ref: ImageRef, refText: string): Promise<void> {
    return this.withLock(async () => {
      const img = this.index.lookup(ref);
      if (!img) return;
      const snapshot = this.index.snapshot();
      this.index.unname(img, ref);
      try {
        await this.collect([img.id]);
      } catch (err) {
        this.index.restore(snapshot);
        throw err;
      }
      this.log.info({ ref: refText, id: img.id }, 'image reference removed');
    });
  }

  /**
   * Drops images among `candidates` that have no name left, writes the index, then deletes the
   * dropped images' blobs (index first: a crash in between leaves only an unnamed blob).
   */
  private async collect(candidates: Iterable<string>): Promise<void> {
    const dropped = this.index.dropUnnamed(candidates);
    try {
      await this.index.persist();
    } catch (err) {
      for (const img of dropped) this.index.keep(img);
      throw err;
    }
    for (const img of dropped) {
      await this.blobs.delete(img.id);
      this.log.info({ id: img.id }, 'image deleted');
    }
  }
}
