/** The VM's root disk: a qcow2 overlay backed by the (never written) image blob. */
import { stat, writeFile } from 'node:fs/promises';
import { InvalidArgumentError } from '../errors.js';
import { qcow2Overlay } from './qcow2_overlay.js';

/** Writes the overlay (built in memory, see qcow2_overlay.ts); fails if `overlayPath` exists. */
export async function createOverlay(opts: {
  backingPath: string;
  backingFormat: 'qcow2' | 'raw';
  backingVirtualSize: bigint;
  overlayPath: string;
  /** Grow the disk to this size (VirtletRootVolumeSize); never shrink. */
  sizeBytes?: number;
}): Promise<void> {
  let size = opts.backingVirtualSize;
  if (opts.sizeBytes !== undefined) {
    if (BigInt(opts.sizeBytes) < opts.backingVirtualSize) {
      throw new InvalidArgumentError(
        `VirtletRootVolumeSize (${opts.sizeBytes} bytes) is smaller than the image's virtual size (${opts.backingVirtualSize} bytes)`,
      );
    }
    size = BigInt(opts.sizeBytes);
  }
  // Whole sectors, rounded up (as qemu-img does).
  size = ((size + 511n) / 512n) * 512n;
  const image = qcow2Overlay({ backingPath: opts.backingPath, backingFormat: opts.backingFormat, virtualSize: size });
  await writeFile(opts.overlayPath, image, { flag: 'wx', mode: 0o644 });
}

/** Bytes the overlay occupies on disk (what the VM wrote), and its inode count (1). */
export async function overlayUsage(path: string): Promise<{ bytes: bigint; inodes: bigint }> {
  try {
    const st = await stat(path, { bigint: true });
    return { bytes: st.blocks * 512n, inodes: 1n };
  } catch {
    return { bytes: 0n, inodes: 0n };
  }
}
