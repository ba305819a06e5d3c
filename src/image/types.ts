import type { DiskFormat } from './disk_format.js';

/** One image as the CRI layer sees it. */
export interface ImageRecord {
  /** `sha256:<hex>` of the blob's content. */
  id: string;
  /** `name:tag` entries pointing at this image (kubelet expects `name:latest` for untagged pulls). */
  repoTags: string[];
  /** `name@sha256:<hex>` entries from pulls by digest. */
  repoDigests: string[];
  /** Bytes of the blob file. */
  size: bigint;
  /** Size of the disk the guest sees. */
  virtualSize: bigint;
  format: DiskFormat;
  /** Where it was last downloaded from (password hidden). */
  sourceUrl: string;
  pulledAtNs: bigint;
}

/** HTTP validators kept with an image so a re-pull can ask "changed since?" instead of downloading again. */
export interface StoredImage extends ImageRecord {
  etag?: string;
  lastModified?: string;
}

export interface ImageFsInfo {
  mountpoint: string;
  usedBytes: bigint;
  inodesUsed: bigint;
  timestampNs: bigint;
}
