/**
 * Test-only crash points. `VMLET_TEST_FAULT_DIR` names a directory; a file in it named after a
 * point arms that point once. The process (serve or netd; netd inherits serve's environment) that
 * reaches an armed point removes the file and kills itself with SIGKILL right there: no handler,
 * no flush, no cleanup, as the OOM killer or a power cut would. Once, so that a netd serve restarts
 * after the fault runs on and shows what recovery makes of the state on disk. The fault suite
 * (test/integration/faults/, `npm run bench -- faults`) and the SR-IOV test use it.
 *
 * Without the variable (always, outside tests) a point costs one environment lookup; `serve`
 * logs a warning when it is set, and refuses to start when the directory arms a name that is no
 * point (a typo would otherwise make a fault test pass without ever faulting).
 */
import { readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

/** Every point, in the order a pod's life reaches them. */
export const FAULT_POINTS = [
  // serve, RunPodSandbox
  'sandbox.run.after-record',
  'sandbox.run.after-network',
  // netd, the network setup of RunPodSandbox
  'netd.setup.after-netns',
  'netd.setup.after-cni-add',
  // netd, the VM side wired at CreateContainer
  'netd.vm-side.after-wire',
  // serve, CreateContainer
  'container.create.after-vm-dir',
  'container.create.after-domain',
  // serve, StartContainer
  'container.start.after-domain-start',
  // serve, StopPodSandbox
  'sandbox.stop.after-containers',
  // netd, the teardown of StopPodSandbox
  'netd.teardown.after-cni-del',
  // serve, RemovePodSandbox
  'sandbox.remove.after-containers',
] as const;

export type FaultPointName = (typeof FAULT_POINTS)[number];

export const FAULT_DIR_ENV = 'VMLET_TEST_FAULT_DIR';

/** The fault dir and the points armed in it now; throws on a file that names no point. */
export function armedFaultPoints(env: NodeJS.ProcessEnv = process.env): { dir: string; armed: FaultPointName[] } | undefined {
  const dir = env[FAULT_DIR_ENV];
  if (dir === undefined || dir === '') return undefined;
  const names = readdirSync(dir);
  const unknown = names.filter((n) => !(FAULT_POINTS as readonly string[]).includes(n));
  if (unknown.length > 0) throw new Error(`${FAULT_DIR_ENV} ${dir} arms ${unknown.map((n) => JSON.stringify(n)).join(', ')}: no such fault point (known: ${FAULT_POINTS.join(', ')})`);
  return { dir, armed: names as FaultPointName[] };
}

/** Dies by SIGKILL when `name` is armed (consuming it); otherwise does nothing. */
export function faultPoint(name: FaultPointName): void {
  const dir = process.env[FAULT_DIR_ENV];
  if (!dir) return;
  try {
    unlinkSync(join(dir, name));
  } catch {
    return; // not armed
  }
  process.kill(process.pid, 'SIGKILL');
}
