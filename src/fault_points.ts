/**
 * Test-only crash points. With `VMLET_FAULT_POINT=<name>` in its environment, the process that
 * reaches that point (serve or netd; netd inherits serve's environment) kills itself with SIGKILL
 * right there: no handler, no flush, no cleanup, the same as the OOM killer or a power cut. The
 * fault suite (test/integration/faults/, `npm run bench -- faults`) restarts vmlet after each such
 * death and counts what was left behind.
 *
 * Off unless the variable is set: a production `vmlet serve` never has it, and `serve` logs a
 * warning naming the point when it does. An unknown name is refused at start-up (a typo would
 * otherwise make a fault test pass without ever faulting).
 */

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

export const FAULT_POINT_ENV = 'VMLET_FAULT_POINT';

/** The armed point, or undefined; throws on a name that is no point. */
export function armedFaultPoint(env: NodeJS.ProcessEnv = process.env): FaultPointName | undefined {
  const value = env[FAULT_POINT_ENV];
  if (value === undefined || value === '') return undefined;
  if (!(FAULT_POINTS as readonly string[]).includes(value)) {
    throw new Error(`${FAULT_POINT_ENV}=${JSON.stringify(value)} names no fault point (known: ${FAULT_POINTS.join(', ')})`);
  }
  return value as FaultPointName;
}

let armed: FaultPointName | undefined | null = null;

/** Dies by SIGKILL when `name` is the armed point; otherwise does nothing (one comparison). */
export function faultPoint(name: FaultPointName): void {
  if (armed === null) {
    try {
      armed = armedFaultPoint();
    } catch {
      armed = undefined; // serve refuses to start with an unknown name (see serve.ts)
    }
  }
  if (armed !== name) return;
  process.kill(process.pid, 'SIGKILL');
}
