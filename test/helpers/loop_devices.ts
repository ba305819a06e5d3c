/** Loop devices a block-volume test makes as its volumes, and detaches whatever happens. */
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';

export class LoopDevices {
  readonly #devices: string[] = [];

  /** A sparse file of `bytes` at `file`, attached to the next free loop device; its /dev path. */
  make(file: string, bytes = 64 * 1024 * 1024): string {
    execFileSync('truncate', ['-s', String(bytes), file]);
    const dev = execFileSync('losetup', ['-f', '--show', file], { encoding: 'utf8' }).trim();
    this.#devices.push(dev);
    return dev;
  }

  /** Detaches every device made here; one that will not detach does not keep the others attached. */
  detachAll(): void {
    const failures: string[] = [];
    for (const dev of this.#devices.splice(0)) {
      try {
        execFileSync('losetup', ['-d', dev]);
      } catch (err) {
        failures.push(`${dev}: ${(err as Error).message}`);
      }
    }
    if (failures.length > 0) throw new Error(`loop devices not detached: ${failures.join('; ')}`);
  }
}

/** `uid:gid:mode` of a path (a device node's ownership before and after a VM held it). */
export function ownerOf(path: string): string {
  const st = statSync(path);
  return `${st.uid}:${st.gid}:${(st.mode & 0o7777).toString(8)}`;
}
