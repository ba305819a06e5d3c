/**
 * Which containers a warm VM can become. Pure. The shape (memory, vCPUs, domain type, CPU model,
 * system UUID) is checked at CreateContainer's start (warmFits); the NICs once the sandbox's VM
 * side is known (warmTapNics).
 */
import { validateCputune } from '../../libvirt/domain_xml.js';
import { nicsFromNetwork } from '../../libvirt/domain_spec.js';
import type { VmAnnotations } from '../../guest/annotations.js';
import type { VmNetwork } from '../../network/types.js';
import type { TapNic } from '../../vmwrapper/tap_nic_args.js';
import { cputuneFor, memoryBytesFor, vcpusFor, type HostFacts } from '../domain_spec_builder.js';
import type { ContainerResources } from '../records.js';
import { WARM_MAX_NICS, type WarmVm } from './pool.js';

/** Whether a warm VM has the shape this container asks for. */
export function warmFits(vm: WarmVm, resources: ContainerResources, annotations: VmAnnotations, vcpuAnnotationGiven: boolean, host: HostFacts): boolean {
  try {
    if (memoryBytesFor(resources, host) !== vm.memoryBytes) return false;
    if (vcpusFor(resources, annotations, vcpuAnnotationGiven, host) !== vm.vcpus) return false;
  } catch {
    return false; // invalid resources: the cold path reports them
  }
  try {
    validateCputune(cputuneFor(resources)); // applied live (plugWarm); bad values: the cold path reports them
  } catch {
    return false;
  }
  // A CPU model or a system UUID are fixed when QEMU starts.
  if (annotations.systemUuid !== undefined) return false;
  if (annotations.cpuModel === 'host-model' && vm.domainType === 'kvm') return false;
  return vm.domainType === host.domainType;
}

/** The TAP NICs of a sandbox network, or undefined when they cannot go to a warm VM. */
export function warmTapNics(network: VmNetwork): TapNic[] | undefined {
  const nics = nicsFromNetwork(network);
  if (nics.length > WARM_MAX_NICS) return undefined;
  const taps: TapNic[] = [];
  for (const n of nics) {
    if (n.kind !== 'tap') return undefined;
    taps.push({ tap: n.tap, mac: n.mac, mtu: n.mtu });
  }
  return taps;
}
