/**
 * Which names point at which image: the tags (`repo:tag`) and digests (`repo@sha256:…`) of every
 * image held, in `<imageDir>/images.json` (replaced atomically). Looks images up by id, name or
 * manifest digest, moves a tag from image to image, takes names off for a removal, and drops
 * images left without any name. It never touches a blob (blob_store.ts); image_catalog.ts keeps
 * the two in step.
 */
import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic, TEMP_PREFIX } from '../store/atomic_file.js';
import { decodeIndex, encodeIndex } from './index_codec.js';
import { parseImageName, repoDigestOf, repoTagOf, type ImageName, type ImageRef } from './reference.js';
import type { ImageRecord, StoredImage } from './types.js';

const INDEX_FILE = 'images.json';

/** The names one pull records on its image. */
export interface PullNames {
  tag?: string;
  digestRef?: string;
}

/** The names a pull of `name` records: its tag (`name:latest` when none) and its digest when pinned. */
export function namesOf(name: ImageName): PullNames {
  const names: PullNames = {};
  const tag = repoTagOf(name);
  if (tag !== undefined) names.tag = tag;
  const digestRef = repoDigestOf(name);
  if (digestRef !== undefined) names.digestRef = digestRef;
  return names;
}

/** An image as callers get it: a copy, without the HTTP validators. */
export function publicRecord(img: StoredImage): ImageRecord {
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

function digestOfRepoDigest(repoDigest: string): string {
  return repoDigest.slice(repoDigest.lastIndexOf('@') + 1);
}

/** A copy of the whole index, to put back when a change cannot be written. */
export type IndexSnapshot = ReadonlyMap<string, StoredImage>;

export class ImageIndex {
  private readonly dir: string;
  private readonly path: string;
  private images = new Map<string, StoredImage>();

  constructor(imageDir: string) {
    this.dir = imageDir;
    this.path = join(imageDir, INDEX_FILE);
  }

  /**
   * The images the index file lists (none when there is no file), after deleting what an
   * interrupted write left. A damaged index fails (InternalError) rather than being guessed at:
   * deleting blobs because the index could not be read would destroy disks that VMs are built on.
   * Nothing is held until `keep` adds them.
   */
  async read(): Promise<StoredImage[]> {
    for (const name of await readdir(this.dir)) {
      if (name.startsWith(TEMP_PREFIX)) await rm(join(this.dir, name), { force: true });
    }
    let text: string | undefined;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return text === undefined ? [] : decodeIndex(text);
  }

  /** Holds `img` (read from the file, or a new image before it has names). */
  keep(img: StoredImage): void {
    this.images.set(img.id, img);
  }

  get(id: string): StoredImage | undefined {
    return this.images.get(id);
  }

  has(id: string): boolean {
    return this.images.has(id);
  }

  get size(): number {
    return this.images.size;
  }

  /** Every image, oldest pull first (ties by id). */
  sorted(): StoredImage[] {
    return [...this.images.values()].sort((a, b) => (a.pulledAtNs < b.pulledAtNs ? -1 : a.pulledAtNs > b.pulledAtNs ? 1 : a.id < b.id ? -1 : 1));
  }

  /** The image `ref` names: by id, by `repo@sha256:…` (manifest digest or content), or by `repo:tag`. */
  lookup(ref: ImageRef): StoredImage | undefined {
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

  /** The image some pull recorded under manifest digest `digest` (any repository). */
  byManifest(digest: string): StoredImage | undefined {
    for (const img of this.images.values()) {
      if (img.repoDigests.some((d) => digestOfRepoDigest(d) === digest && img.id !== digest)) return img;
    }
    return undefined;
  }

  /** Gives image `id` the names; the tag moves off any other image. Returns the ids whose names changed. */
  name(id: string, { tag, digestRef }: PullNames): Set<string> {
    const img = this.images.get(id)!;
    const touched = new Set<string>([id]);
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
    return touched;
  }

  /**
   * Takes off `img` what `ref` (which found it) names: by id every name; by `repo:tag` that tag;
   * by `repo@sha256:…` that digest and the repo's tags on the image.
   */
  unname(img: StoredImage, ref: ImageRef): void {
    if (ref.kind === 'id') {
      img.repoTags = [];
      img.repoDigests = [];
      return;
    }
    const { name } = ref;
    if (name.digest === undefined) {
      const tag = repoTagOf(name)!;
      img.repoTags = img.repoTags.filter((t) => t !== tag);
    } else {
      const digestRef = repoDigestOf(name)!;
      img.repoDigests = img.repoDigests.filter((d) => d !== digestRef);
      img.repoTags = img.repoTags.filter((t) => repoOfTag(t) !== name.repo);
    }
  }

  /** Forgets the images among `ids` that have no name left, and returns them. */
  dropUnnamed(ids: Iterable<string>): StoredImage[] {
    const dropped: StoredImage[] = [];
    for (const id of new Set(ids)) {
      const img = this.images.get(id);
      if (img && img.repoTags.length === 0 && img.repoDigests.length === 0) {
        this.images.delete(id);
        dropped.push(img);
      }
    }
    return dropped;
  }

  snapshot(): IndexSnapshot {
    return new Map([...this.images].map(([k, v]) => [k, cloneImage(v)]));
  }

  /** Puts back the whole index as `snapshot` had it. */
  restore(snapshot: IndexSnapshot): void {
    this.images = new Map([...snapshot].map(([k, v]) => [k, cloneImage(v)]));
  }

  /** Writes the index file (atomically). */
  async persist(): Promise<void> {
    await writeFileAtomic(this.path, encodeIndex(this.images.values()), { mode: 0o600 });
  }
}
