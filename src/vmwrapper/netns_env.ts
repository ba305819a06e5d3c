/**
 * The environment a domain passes to the vmwrapper (<qemu:env>), validated on the producing side
 * with the same rules the launcher applies on the consuming side.
 */
import { InvalidArgumentError } from '../errors.js';
import { isVmletNetnsName } from '../network/names.js';
import { NETNS_DIR, VMWRAPPER_NETNS_ENV } from './launcher.js';

/** Path of the pod's netns as the launcher accepts it: /run/netns/<vmlet netns name>. */
export function vmwrapperNetnsPath(netnsName: string): string {
  if (typeof netnsName !== 'string' || !isVmletNetnsName(netnsName)) {
    throw new InvalidArgumentError(`netns name ${JSON.stringify(netnsName)} is not a vmlet netns name`);
  }
  return `${NETNS_DIR}/${netnsName}`;
}

/** The netns name inside a path the launcher would accept, or undefined for anything else. */
export function parseVmwrapperNetnsPath(path: string): string | undefined {
  const prefix = `${NETNS_DIR}/`;
  if (typeof path !== 'string' || !path.startsWith(prefix)) return undefined;
  const name = path.slice(prefix.length);
  return isVmletNetnsName(name) ? name : undefined;
}

/** The <qemu:env> entries that put the domain's QEMU into `netnsName` (VmSpec.emulatorEnv). */
export function vmwrapperEnv(netnsName: string): { name: string; value: string }[] {
  return [{ name: VMWRAPPER_NETNS_ENV, value: vmwrapperNetnsPath(netnsName) }];
}
