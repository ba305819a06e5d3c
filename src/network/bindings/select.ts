/**
 * Picks the binding for an interface CNI put in a pod netns, and the binding that owns a persisted
 * state. This is the seam new kinds plug into: an SR-IOV binding (VF handed to the VM as a PCI
 * device, MAC and VLAN kept on the PF side) or a masquerade binding registers here and joins the
 * `WiredInterface` union; the tap binding does not change.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { FailedPreconditionError, InternalError, UnimplementedError } from '../../errors.js';
import type { NetworkBinding } from './binding.js';
import type { BindingKind, WiredInterface } from './types.js';
import type { LinkState } from './snapshot.js';

export type LinkClass = { kind: 'tap' } | { kind: 'sriov'; pciAddress: string };

const PCI_ADDRESS = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Classifies a link by what it is. A veth gets the tap binding. A PCI network function whose
 * device has a `physfn` link in sysfs is an SR-IOV VF. The PCI device is looked up under
 * `<sysfsRoot>/bus/pci/devices/<address>` rather than /sys/class/net/<if>/device: the class/net
 * view shows the interfaces of the namespace that mounted sysfs (the host's), and the VF lives in
 * the pod's, while PCI devices are the same from every namespace. `sysfsRoot` is configurable so
 * tests can use a fake tree.
 */
export async function classifyLink(link: LinkState, sysfsRoot: string): Promise<LinkClass> {
  if (link.kind === 'veth') return { kind: 'tap' };
  if (link.parentBus === 'pci' && link.parentDev !== undefined) {
    const pciAddress = link.parentDev.toLowerCase();
    if (!PCI_ADDRESS.test(pciAddress)) {
      throw new InternalError(`${link.name} reports parent PCI device ${JSON.stringify(link.parentDev)}`);
    }
    if (await exists(join(sysfsRoot, 'bus', 'pci', 'devices', pciAddress, 'physfn'))) {
      return { kind: 'sriov', pciAddress };
    }
  }
  throw new FailedPreconditionError(
    `no binding for ${link.name} (${link.kind ?? 'device'}${link.parentBus ? ` on ${link.parentBus}` : ''}): ` +
      'only veth interfaces (tap binding) are supported',
  );
}

export interface BindingSelectorOptions {
  bindings: { [K in BindingKind]: NetworkBinding<Extract<WiredInterface, { kind: K }>> };
  sysfsRoot?: string;
}

export class BindingSelector {
  private readonly sysfsRoot: string;

  constructor(private readonly options: BindingSelectorOptions) {
    this.sysfsRoot = options.sysfsRoot ?? '/sys';
  }

  /** The binding to wire `link` with. */
  async select(link: LinkState): Promise<NetworkBinding> {
    const cls = await classifyLink(link, this.sysfsRoot);
    switch (cls.kind) {
      case 'tap':
        return this.options.bindings.tap;
      case 'sriov':
        throw new UnimplementedError(
          `${link.name} is an SR-IOV VF (PCI ${cls.pciAddress}); VF passthrough is not implemented yet`,
        );
    }
  }

  /** The binding that can undo `state`. */
  forState(state: WiredInterface): NetworkBinding {
    const binding = (this.options.bindings as Record<string, NetworkBinding | undefined>)[state.kind];
    if (!binding) throw new InternalError(`persisted interface state of unknown kind ${JSON.stringify(state.kind)}`);
    return binding;
  }
}
