/** The VM's root disk: a qcow2 overlay backed by the (never written) image blob. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { stat } from 'node:fs/promises';
import { InvalidArgumentError, InternalError } from '../errors.js';

const run = promisify(execFile);
const QEMU_IMG_TIMEOUT_MS = 60_000;

export async function createOverlay(opts: {
  backingPath: string;
  backingFormat: 'qcow2' | 'raw';
  backingVirtualSize: bigint;
  overlayPath: string;
  /** Grow the disk to this size (VirtletRootVolumeSize); never shrink. */
  sizeBytes?: number;
}): Promise<void> {
  const args = ['create', '-q', '-f', 'qcow2', '-b', opts.backingPath, '-F', opts.backingFormat, opts.overlayPath];
  if (opts.sizeBytes !== undefined) {
    if (BigInt(opts.sizeBytes) < opts.backingVirtualSize) {
      throw new InvalidArgumentError(
        `VirtletRootVolumeSize (${opts.sizeBytes} bytes) is smaller than the image's virtual size (${opts.backingVirtualSize} bytes)`,
      );
    }
    args.push(String(opts.sizeBytes));
  }
  try {
    await run('qemu-img', args, { timeout: QEMU_IMG_TIMEOUT_MS });
  } catch (err) {
    throw new InternalError(`qemu-img create of the root disk overlay failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`);
  }
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
