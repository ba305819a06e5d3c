/**
 * Test-only crash points: `VMLET_TEST_FAULT_DIR` names a directory, and a file in it named after a
 * point arms that point once. Reaching an armed point removes the file and SIGKILLs this process,
 * so a test can crash netd exactly between two steps and check what the next netd makes of the
 * state on disk. Without the variable (always, outside tests) a point costs one env lookup.
 */
import { unlinkSync } from 'node:fs';
import { join } from 'node:path';

export type FaultPoint =
  /** Every interface wired (a VF bound to vfio-pci), the record not yet saying so. */
  'netd-after-wire';

export function faultPoint(name: FaultPoint): void {
  const dir = process.env.VMLET_TEST_FAULT_DIR;
  if (!dir) return;
  try {
    unlinkSync(join(dir, name));
  } catch {
    return; // not armed
  }
  process.kill(process.pid, 'SIGKILL');
}
