/**
 * Which vmlet instance made a host object. Several vmlets may share one host (and one libvirtd):
 * each is known by its state dir, and start-up clean-up touches only objects carrying its own id.
 */
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';

/** 16 hex digits derived from the state dir: in domain metadata, and (its first 8) in warm netns names. */
export function ownerIdFor(stateDir: string): string {
  return createHash('sha256').update(resolve(stateDir)).digest('hex').slice(0, 16);
}
