import { createHash } from 'node:crypto';
import { FailedPreconditionError } from '../../errors.js';

/**
 * Image manifests and indexes (OCI image-spec and Docker's schema 2), validated into what a
 * containerDisk pull needs. Pure functions.
 */

export const MEDIA = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const;

export const MANIFEST_ACCEPT = [MEDIA.ociIndex, MEDIA.ociManifest, MEDIA.dockerList, MEDIA.dockerManifest].join(', ');

/** Manifests and indexes are small; anything bigger is not one. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
export const MAX_LAYERS = 128;

export type LayerCompression = 'none' | 'gzip' | 'zstd';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface Layer extends Descriptor {
  compression: LayerCompression;
}

export interface ImageManifest {
  kind: 'manifest';
  config: Descriptor;
  layers: Layer[];
}

export interface PlatformEntry extends Descriptor {
  os?: string;
  architecture?: string;
  variant?: string;
}

export interface ImageIndex {
  kind: 'index';
  manifests: PlatformEntry[];
}

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

const LAYER_TYPES: Record<string, LayerCompression> = {
  'application/vnd.oci.image.layer.v1.tar': 'none',
  'application/vnd.oci.image.layer.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd': 'zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar': 'none',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd': 'zstd',
  'application/vnd.docker.image.rootfs.diff.tar': 'none',
  'application/vnd.docker.image.rootfs.diff.tar.gzip': 'gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': 'gzip',
};

export function sha256Digest(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function bad(what: string, source: string): never {
  throw new FailedPreconditionError(`${source}: ${what}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function descriptor(raw: unknown, where: string, source: string): Descriptor {
  if (!isObject(raw)) bad(`${where} is not an object`, source);
  const { mediaType, digest, size } = raw;
  if (typeof mediaType !== 'string' || mediaType.length > 256) bad(`${where}.mediaType is missing`, source);
  if (typeof digest !== 'string' || !DIGEST_RE.test(digest)) {
    bad(`${where}.digest ${JSON.stringify(digest)} is not a sha256 digest (only sha256 is supported)`, source);
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) bad(`${where}.size is not a whole number of bytes`, source);
  return { mediaType, digest, size };
}

/**
 * Parses a manifest or index. `contentType` is the HTTP Content-Type; the document's own
 * `mediaType`, when present, must agree with it.
 */
export function parseManifestDocument(body: Buffer, contentType: string, source: string): ImageManifest | ImageIndex {
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch {
    bad('not JSON', source);
  }
  if (!isObject(doc)) bad('not a JSON object', source);
  if (doc.schemaVersion !== 2) bad(`schemaVersion ${JSON.stringify(doc.schemaVersion)} is not supported (only schema 2)`, source);
  const declared = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  const known = Object.values(MEDIA) as string[];
  let type = declared ?? (known.includes(contentType) ? contentType : undefined);
  // OCI documents may omit mediaType; the shape tells then.
  if (type === undefined) type = Array.isArray(doc.manifests) ? MEDIA.ociIndex : MEDIA.ociManifest;
  if (!known.includes(type)) bad(`media type ${JSON.stringify(type)} is not an image manifest or index`, source);
  if (declared !== undefined && known.includes(contentType) && contentType !== declared) {
    bad(`served as ${contentType} but declares ${declared}`, source);
  }
  if (type === MEDIA.ociIndex || type === MEDIA.dockerList) {
    if (!Array.isArray(doc.manifests)) bad('index has no manifests list', source);
    if (doc.manifests.length > 1024) bad('index lists more than 1024 manifests', source);
    const manifests = doc.manifests.map((m: unknown, i: number): PlatformEntry => {
      const d: PlatformEntry = descriptor(m, `manifests[${i}]`, source);
      const p = (m as Record<string, unknown>).platform;
      if (isObject(p)) {
        if (typeof p.os === 'string') d.os = p.os;
        if (typeof p.architecture === 'string') d.architecture = p.architecture;
        if (typeof p.variant === 'string') d.variant = p.variant;
      }
      return d;
    });
    return { kind: 'index', manifests };
  }
  const config = descriptor(doc.config, 'config', source);
  if (!Array.isArray(doc.layers) || doc.layers.length === 0) bad('the image has no layers', source);
  if (doc.layers.length > MAX_LAYERS) bad(`the image has more than ${MAX_LAYERS} layers`, source);
  const layers = doc.layers.map((l: unknown, i: number): Layer => {
    const d = descriptor(l, `layers[${i}]`, source);
    const compression = LAYER_TYPES[d.mediaType];
    if (compression === undefined) bad(`layers[${i}] has media type ${JSON.stringify(d.mediaType)}, which is not a tar layer`, source);
    return { ...d, compression };
  });
  return { kind: 'manifest', config, layers };
}

/** The linux/amd64 entry of an index (an entry without a platform does not qualify). */
export function selectPlatform(index: ImageIndex, source: string, os = 'linux', architecture = 'amd64'): PlatformEntry {
  const manifestTypes: string[] = [MEDIA.ociManifest, MEDIA.dockerManifest];
  const match = index.manifests.find((m) => m.os === os && m.architecture === architecture && manifestTypes.includes(m.mediaType));
  if (match) return match;
  const offered = index.manifests.map((m) => `${m.os ?? '?'}/${m.architecture ?? '?'}`).join(', ');
  throw new FailedPreconditionError(`${source}: no ${os}/${architecture} image in the index (it offers: ${offered || 'nothing'})`);
}
