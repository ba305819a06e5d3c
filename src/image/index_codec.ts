import { InternalError } from '../errors.js';
import { MAX_IMAGE_NAME_LENGTH, normalizeImageId } from './reference.js';
import type { StoredImage } from './types.js';

/**
 * The on-disk form of the image index (one JSON document, written atomically). bigints are
 * decimal strings. Decoding validates every field, so a hand-edited or damaged file cannot
 * inject a path (ids must be sha256 hex) or a value of the wrong type.
 */

export const INDEX_VERSION = 1;

interface IndexFileV1 {
  version: 1;
  images: Record<string, string | string[] | undefined>[];
}

export function encodeIndex(images: Iterable<StoredImage>): string {
  const list = [...images]
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((img) => {
      const out: Record<string, string | string[]> = {
        id: img.id,
        repoTags: img.repoTags,
        repoDigests: img.repoDigests,
        size: img.size.toString(),
        virtualSize: img.virtualSize.toString(),
        format: img.format,
        sourceUrl: img.sourceUrl,
        pulledAtNs: img.pulledAtNs.toString(),
      };
      if (img.etag !== undefined) out.etag = img.etag;
      if (img.lastModified !== undefined) out.lastModified = img.lastModified;
      return out;
    });
  const doc: IndexFileV1 = { version: INDEX_VERSION, images: list };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

function bad(what: string): never {
  throw new InternalError(`image index is invalid: ${what}`);
}

function str(v: unknown, what: string, max = MAX_IMAGE_NAME_LENGTH * 2): string {
  if (typeof v !== 'string' || v.length > max) bad(`${what} must be a string`);
  return v;
}

function strList(v: unknown, what: string): string[] {
  if (!Array.isArray(v)) bad(`${what} must be a list`);
  return v.map((x, i) => str(x, `${what}[${i}]`));
}

function uint(v: unknown, what: string): bigint {
  if (typeof v !== 'string' || !/^[0-9]{1,30}$/.test(v)) bad(`${what} must be a decimal string`);
  return BigInt(v);
}

export function decodeIndex(text: string): StoredImage[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    bad('not JSON');
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) bad('not an object');
  const d = doc as Record<string, unknown>;
  if (d.version !== INDEX_VERSION) bad(`unknown version ${JSON.stringify(d.version)}`);
  if (!Array.isArray(d.images)) bad('images must be a list');
  const seen = new Set<string>();
  return d.images.map((raw: unknown, i: number) => {
    if (typeof raw !== 'object' || raw === null) bad(`images[${i}] must be an object`);
    const r = raw as Record<string, unknown>;
    const id = normalizeImageId(str(r.id, `images[${i}].id`));
    if (id === undefined || !id.startsWith('sha256:') || id !== r.id) bad(`images[${i}].id must be sha256:<64 hex>`);
    if (seen.has(id)) bad(`image ${id} appears twice`);
    seen.add(id);
    const format = r.format;
    if (format !== 'qcow2' && format !== 'raw') bad(`images[${i}].format must be qcow2 or raw`);
    const img: StoredImage = {
      id,
      repoTags: strList(r.repoTags, `images[${i}].repoTags`),
      repoDigests: strList(r.repoDigests, `images[${i}].repoDigests`),
      size: uint(r.size, `images[${i}].size`),
      virtualSize: uint(r.virtualSize, `images[${i}].virtualSize`),
      format,
      sourceUrl: str(r.sourceUrl, `images[${i}].sourceUrl`, 1024 * 1024),
      pulledAtNs: uint(r.pulledAtNs, `images[${i}].pulledAtNs`),
    };
    if (r.etag !== undefined) img.etag = str(r.etag, `images[${i}].etag`, 1024);
    if (r.lastModified !== undefined) img.lastModified = str(r.lastModified, `images[${i}].lastModified`, 1024);
    return img;
  });
}
