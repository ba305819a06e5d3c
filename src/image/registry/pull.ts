import { randomBytes } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, type ZlibOptions } from 'node:zlib';
import * as tarStream from 'tar-stream';
import {
  FailedPreconditionError,
  ResourceExhaustedError,
  UnavailableError,
  UnimplementedError,
  VmletError,
  errorText,
} from '../../errors.js';
import { TEMP_PREFIX } from '../../store/atomic_file.js';
import { BlockPipe, type BlockPipeResult } from '../block_pipe.js';
import { SyncedFileWriter } from '../synced_file.js';
import type { RegistryCredentials } from './auth.js';
import { RegistryClient } from './client.js';
import { DiskTree, type EntryKind } from './disk_tree.js';
import type { RegistryEndpoint } from './hosts.js';
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
 * only the regular files under disk/ (each to its own temp file, hashed as it is written).
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

/** Blobs and disks at least this large are hashed in a worker thread (its start costs ~20 ms). */
export const WORKER_HASH_MIN_BYTES = 16 * 1024 * 1024;
/** Buffering between stages, so download, inflate and untar run at once instead of in lock-step. */
const STAGE_HIGH_WATER_MARK = 1024 * 1024;
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

/**
 * Hashes and counts what passes; refuses more than `size` bytes, and at the end a wrong size or
 * digest. Chunks pass on at once; a large blob is hashed off the main thread (see BlockPipe).
 */
function blobVerifier(layer: { digest: string; size: number }, what: string, onBytes: (n: number) => void): Transform {
  const pipe = new BlockPipe({ hashOn: layer.size >= WORKER_HASH_MIN_BYTES ? 'worker' : 'main' });
  let seen = 0;
  return new Transform({
    highWaterMark: STAGE_HIGH_WATER_MARK,
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      if (seen > layer.size) {
        cb(new FailedPreconditionError(`${what} is longer than the ${layer.size} bytes its descriptor gives`));
        return;
      }
      onBytes(chunk.length);
      const wait = pipe.write(chunk);
      if (wait) wait.then(() => cb(null, chunk), cb);
      else cb(null, chunk);
    },
    flush(cb) {
      if (seen !== layer.size) {
        cb(new FailedPreconditionError(`${what} ended after ${seen} of the ${layer.size} bytes its descriptor gives`));
        return;
      }
      pipe.end().then(({ sha256 }) => {
        const got = `sha256:${sha256}`;
        if (got !== layer.digest) cb(new FailedPreconditionError(`${what} has digest ${got}, not the ${layer.digest} its manifest names`));
        else cb();
      }, cb);
    },
    destroy(err, cb) {
      pipe.destroy().then(
        () => cb(err),
        () => cb(err),
      );
    },
  });
}

/** Counts decompressed bytes so a compression bomb cannot run forever. */
function byteLimit(max: number, what: string): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      if (seen > max) cb(new ResourceExhaustedError(`${what} unpacks to more than ${max} bytes`));
      else cb(null, chunk);
    },
  });
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
  const extract = tarStream.extract();
  // Feeds the tar parser with backpressure from a node pipeline.
  const feed = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (extract.write(chunk)) cb();
      else extract.once('drain', () => cb());
    },
    final(cb) {
      (extract as unknown as { end(): void }).end();
      cb();
    },
    destroy(err, cb) {
      if (err) extract.destroy(err);
      cb(err);
    },
  });
  const stages: (Readable | Transform | Writable)[] = [res, blobVerifier(layer, what, onBytes)];
  if (layer.compression === 'gzip') {
    // zlib passes stream options through to its Transform (the typings only list zlib's own).
    stages.push(createGunzip({ chunkSize: 256 * 1024, highWaterMark: STAGE_HIGH_WATER_MARK } as ZlibOptions));
    stages.push(byteLimit((opts.maxBytes ?? Number.MAX_SAFE_INTEGER) + MAX_DECOMPRESSION_RATIO_SLACK, what));
  }
  stages.push(feed);
  const fed = pipeline(stages, { signal: opts.signal }).catch((err: unknown) => {
    extract.destroy(err as Error);
    throw err;
  });

  const readEntries = async (): Promise<void> => {
    for await (const entry of extract) {
      const h = entry.header;
      const decision = tree.entry(h.name, kindOf(h.type), typeName(h.type), index);
      for (const old of decision.released) {
        temps.delete(old.tmp);
        await rm(old.tmp, { force: true });
      }
      if (decision.action === 'skip') {
        entry.resume(); // skipped entries are drained
        continue;
      }
      const declared = h.size ?? 0;
      if (opts.maxBytes !== undefined && declared > opts.maxBytes) {
        throw new ResourceExhaustedError(`${what}: /${decision.path} is ${declared} bytes, more than ${limitName} of ${opts.maxBytes} bytes`);
      }
      const tmp = join(opts.tmpDir, `${TEMP_PREFIX}disk-${randomBytes(8).toString('hex')}`);
      const fh = await open(tmp, 'wx', 0o600);
      temps.add(tmp);
      // Each block is hashed (in a worker for large files) while the threadpool writes it; the
      // file is flushed as it grows so the final fsync is short.
      const file = new SyncedFileWriter(fh);
      const pipe = new BlockPipe({ hashOn: declared >= WORKER_HASH_MIN_BYTES ? 'worker' : 'main', sink: file.write });
      let written: BlockPipeResult;
      try {
        for await (const chunk of entry as AsyncIterable<Buffer>) {
          const wait = pipe.write(chunk);
          if (wait) await wait;
        }
        written = await pipe.end();
        await file.finish();
      } catch (err) {
        await pipe.destroy();
        throw err;
      } finally {
        await file.settled();
        await fh.close();
      }
      const { sha256, bytes: size } = written;
      tree.add(decision.path, index, { tmp, sha256, size });
    }
  };

  // Both sides settle before anything is cleaned up, so no write races the removal of temp files.
  const outcomes = await Promise.allSettled([
    readEntries().catch((err: unknown) => {
      res.destroy(err as Error);
      throw err;
    }),
    fed,
  ]);
  const failures = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected').map((o) => o.reason as unknown);
  if (failures.length === 0) return;
  if (opts.signal.aborted) throw opts.signal.reason;
  const err = failures.find((e) => e instanceof VmletError) ?? failures[0];
  if (err instanceof VmletError) throw err;
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (code === 'ENOSPC') throw new ResourceExhaustedError(`no space left in the image directory while unpacking ${what}`, { cause: err });
  if (code.startsWith('Z_')) throw new FailedPreconditionError(`${what} is not valid gzip data: ${errorText(err)}`, { cause: err });
  if (['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNREFUSED', 'ERR_STREAM_PREMATURE_CLOSE'].includes(code)) {
    throw new UnavailableError(`${what}: the download broke off: ${errorText(err)}`, { cause: err });
  }
  throw new FailedPreconditionError(`${what} could not be read as a tar archive: ${errorText(err)}`, { cause: err });
}
