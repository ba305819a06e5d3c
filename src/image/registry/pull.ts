import { randomBytes } from 'node:crypto';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import {
  FailedPreconditionError,
  ResourceExhaustedError,
  UnavailableError,
  UnimplementedError,
  VmletError,
  errorText,
} from '../../errors.js';
import { TEMP_PREFIX } from '../../store/atomic_file.js';
import type { RegistryCredentials } from './auth.js';
import { RegistryClient } from './client.js';
import { DiskTree, type EntryKind } from './disk_tree.js';
import type { RegistryEndpoint } from './hosts.js';
import { LayerUnpacker, UnpackFailure } from './layer_unpacker.js';
import {
  MANIFEST_ACCEPT,
  MAX_CONFIG_BYTES,
  MAX_MANIFEST_BYTES,
  parseManifestDocument,
  selectPlatform,
  sha256Digest,
  type ImageManifest,
  type Layer,
} from './manifest.js';
import type { RegistryReference } from './name.js';

/**
 * Pulls a containerDisk: resolves the reference to a linux/amd64 manifest, fetches and verifies
 * the config, then streams every layer through sha256 + size checks, gunzip and untar, writing
 * only the regular files under disk/ (each to its own temp file, hashed as it is written); all of
 * that but the HTTP receive runs in a worker thread (see LayerUnpacker).
 * Every blob is verified before the result is returned; on any failure every temp file is gone.
 */

export interface RegistryPullOptions {
  endpoints: RegistryEndpoint[];
  credentials?: RegistryCredentials;
  signal: AbortSignal;
  stallTimeoutMs: number;
  /** Where temp files go (the store's tmp dir). */
  tmpDir: string;
  /** Largest disk / total layer size accepted. */
  maxBytes?: number;
  maxBytesName?: string;
  freeBytes?: () => Promise<number>;
  /** True when the store already holds an image pulled from this manifest digest: skip the layers. */
  holdsManifest?: (manifestDigest: string) => boolean;
  onProgress?: (receivedBytes: number, totalBytes: number | undefined) => void;
}

export type RegistryPullResult =
  | { held: true; manifestDigest: string }
  | {
      held: false;
      manifestDigest: string;
      /** Temp file holding the disk; the caller owns it now. */
      diskPath: string;
      diskSha256: string;
      diskSize: number;
      /** Where the disk sat in the image, e.g. `disk/disk.qcow2`. */
      diskName: string;
      layerBytes: number;
    };

interface DiskPayload {
  tmp: string;
  sha256: string;
  size: number;
}

const MAX_DECOMPRESSION_RATIO_SLACK = 1024 * 1024 * 1024;

function kindOf(type: string | null | undefined): EntryKind {
  if (type === 'file' || type === 'contiguous-file' || type === undefined || type === null) return 'file';
  if (type === 'directory') return 'directory';
  return 'other';
}

function typeName(type: string | null | undefined): string {
  switch (type) {
    case 'symlink':
      return 'symbolic link';
    case 'link':
      return 'hard link';
    case 'character-device':
      return 'character device';
    case 'block-device':
      return 'block device';
    default:
      return type ?? 'file';
  }
}

export async function pullContainerDisk(ref: RegistryReference, opts: RegistryPullOptions): Promise<RegistryPullResult> {
  const image = `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
  const client = new RegistryClient({
    registry: ref.registry,
    repository: ref.repository,
    endpoints: opts.endpoints,
    credentials: opts.credentials,
    signal: opts.signal,
    stallTimeoutMs: opts.stallTimeoutMs,
  });

  // 1. The reference → a manifest (through an index when there is one), every document verified.
  const top = await client.manifest(ref.digest ?? ref.tag!, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES);
  const manifestDigest = sha256Digest(top.body);
  if (ref.digest !== undefined && manifestDigest !== ref.digest) {
    throw new FailedPreconditionError(`${image}: the registry served a manifest with digest ${manifestDigest}`);
  }
  if (opts.holdsManifest?.(manifestDigest)) return { held: true, manifestDigest };
  let doc = parseManifestDocument(top.body, top.contentType, `manifest of ${image}`);
  let source = top.endpoint;
  if (doc.kind === 'index') {
    const entry = selectPlatform(doc, `index of ${image}`);
    const child = await client.manifest(entry.digest, MANIFEST_ACCEPT, MAX_MANIFEST_BYTES);
    const childDigest = sha256Digest(child.body);
    if (childDigest !== entry.digest) throw new FailedPreconditionError(`${image}: the registry served manifest ${childDigest} for ${entry.digest}`);
    doc = parseManifestDocument(child.body, child.contentType, `manifest ${entry.digest} of ${image}`);
    if (doc.kind !== 'manifest') throw new FailedPreconditionError(`${image}: index entry ${entry.digest} is another index`);
    source = child.endpoint;
  }
  const manifest: ImageManifest = doc;

  // 2. Sizes announced by the manifest are checked before anything is written.
  const total = manifest.layers.reduce((sum, l) => sum + l.size, 0);
  const limitName = opts.maxBytesName ?? 'the size limit';
  if (opts.maxBytes !== undefined && total > opts.maxBytes) {
    throw new ResourceExhaustedError(`${image}: its layers announce ${total} bytes, more than ${limitName} of ${opts.maxBytes} bytes`);
  }
  if (opts.freeBytes) {
    const free = await opts.freeBytes();
    if (total > free) throw new ResourceExhaustedError(`${image}: its layers announce ${total} bytes, more than the ${free} bytes free in the image directory`);
  }
  const zstd = manifest.layers.find((l) => l.compression === 'zstd');
  if (zstd) throw new UnimplementedError(`${image}: layer ${zstd.digest} is zstd-compressed, which this vmlet cannot unpack (use gzip or uncompressed layers)`);
  if (manifest.config.size > MAX_CONFIG_BYTES) throw new ResourceExhaustedError(`${image}: its config is ${manifest.config.size} bytes, more than ${MAX_CONFIG_BYTES}`);

  // 3. The config blob, verified (its content is not needed beyond being what the manifest names).
  const config = await client.smallBlob(manifest.config.digest, MAX_CONFIG_BYTES, source);
  if (sha256Digest(config) !== manifest.config.digest || config.length !== manifest.config.size) {
    throw new FailedPreconditionError(`${image}: config blob does not match its digest ${manifest.config.digest}`);
  }

  // 4. The layers, in order (whiteouts apply to lower layers).
  const tree = new DiskTree<DiskPayload>();
  const temps = new Set<string>();
  let received = 0;
  const onBytes = (n: number): void => {
    received += n;
    opts.onProgress?.(received, total);
  };
  try {
    for (let i = 0; i < manifest.layers.length; i++) {
      await extractLayer(client, manifest.layers[i]!, i, tree, temps, source, image, opts, onBytes);
    }
    const { path, payload } = tree.result();
    temps.delete(payload.tmp);
    return {
      held: false,
      manifestDigest,
      diskPath: payload.tmp,
      diskSha256: payload.sha256,
      diskSize: payload.size,
      diskName: path,
      layerBytes: received,
    };
  } finally {
    for (const tmp of temps) await rm(tmp, { force: true });
  }
}

async function extractLayer(
  client: RegistryClient,
  layer: Layer,
  index: number,
  tree: DiskTree<DiskPayload>,
  temps: Set<string>,
  prefer: RegistryEndpoint,
  image: string,
  opts: RegistryPullOptions,
  onBytes: (n: number) => void,
): Promise<void> {
  const what = `${image}: layer ${layer.digest}`;
  const { res } = await client.blob(layer.digest, prefer);
  const limitName = opts.maxBytesName ?? 'the size limit';
  const maxUnpacked = (opts.maxBytes ?? Number.MAX_SAFE_INTEGER) + MAX_DECOMPRESSION_RATIO_SLACK;
  // The file the worker writes now: opened, flushed in the background and fsynced here.
  let file: { fh: FileHandle; tmp: string; path: string; syncing?: Promise<void>; syncError?: unknown } | undefined;
  const settle = async (): Promise<void> => {
    while (file?.syncing) await file.syncing;
  };
  const unpacker = new LayerUnpacker({
    gzip: layer.compression === 'gzip',
    blobBytes: layer.size,
    // A failed unpack stops the download rather than waiting for its next chunk.
    onFailure: () => res.destroy(),
    maxUnpackedBytes: maxUnpacked,
    onEntry: async (h) => {
      const decision = tree.entry(h.name, kindOf(h.type), typeName(h.type), index);
      for (const old of decision.released) {
        temps.delete(old.tmp);
        await rm(old.tmp, { force: true });
      }
      if (decision.action === 'skip') return undefined;
      if (opts.maxBytes !== undefined && h.size > opts.maxBytes) {
        throw new ResourceExhaustedError(`${what}: /${decision.path} is ${h.size} bytes, more than ${limitName} of ${opts.maxBytes} bytes`);
      }
      const tmp = join(opts.tmpDir, `${TEMP_PREFIX}disk-${randomBytes(8).toString('hex')}`);
      const fh = await open(tmp, 'wx', 0o600);
      temps.add(tmp);
      file = { fh, tmp, path: decision.path };
      return fh.fd;
    },
    // The file's pages are flushed while it grows, so the fsync at its end finds little left.
    onWritten: () => {
      const f = file;
      if (!f || f.syncing) return;
      f.syncing = f.fh.datasync().then(
        () => {
          f.syncing = undefined;
        },
        (err: unknown) => {
          f.syncError ??= err;
          f.syncing = undefined;
        },
      );
    },
    onFile: async ({ sha256, bytes }) => {
      const f = file!;
      await settle();
      if (f.syncError !== undefined) throw f.syncError;
      await f.fh.truncate(bytes); // a trailing zero run was left as a hole
      await f.fh.sync();
      file = undefined;
      await f.fh.close();
      tree.add(f.path, index, { tmp: f.tmp, sha256, size: bytes });
    },
  });

  let seen = 0;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      seen += chunk.length;
      if (seen > layer.size) throw new FailedPreconditionError(`${what} is longer than the ${layer.size} bytes its descriptor gives`);
      onBytes(chunk.length);
      const wait = unpacker.write(chunk);
      if (wait) await wait;
    }
    if (seen !== layer.size) throw new FailedPreconditionError(`${what} ended after ${seen} of the ${layer.size} bytes its descriptor gives`);
    const got = `sha256:${await unpacker.end()}`;
    if (got !== layer.digest) throw new FailedPreconditionError(`${what} has digest ${got}, not the ${layer.digest} its manifest names`);
  } catch (err) {
    // The worker's own error says more than the broken pipe it left behind.
    throw unpackError(unpacker.failed instanceof UnpackFailure || unpacker.failed instanceof VmletError ? unpacker.failed : err, what, opts.signal);
  } finally {
    res.destroy();
    // Once the worker has exited none of its writes is in flight: the file can be closed (and removed by the caller).
    await unpacker.close();
    await settle();
    if (file) await file.fh.close().catch(() => undefined);
  }
}

function unpackError(err: unknown, what: string, signal: AbortSignal): unknown {
  if (signal.aborted) return signal.reason;
  if (err instanceof VmletError) return err;
  if (err instanceof UnpackFailure && err.limit) return new ResourceExhaustedError(`${what} ${err.message}`, { cause: err });
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (code === 'ENOSPC') return new ResourceExhaustedError(`no space left in the image directory while unpacking ${what}`, { cause: err });
  if (code.startsWith('Z_')) return new FailedPreconditionError(`${what} is not valid gzip data: ${errorText(err)}`, { cause: err });
  if (['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNREFUSED', 'ERR_STREAM_PREMATURE_CLOSE', 'ABORT_ERR'].includes(code)) {
    return new UnavailableError(`${what}: the download broke off: ${errorText(err)}`, { cause: err });
  }
  if (err instanceof UnpackFailure) return new FailedPreconditionError(`${what} could not be read as a tar archive: ${errorText(err)}`, { cause: err });
  return new UnavailableError(`${what}: the download broke off: ${errorText(err)}`, { cause: err });
}
