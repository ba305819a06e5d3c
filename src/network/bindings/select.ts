/**
 * Picks the binding for an interface CNI put in a pod netns, and the binding that owns a persisted
 * state. This is the seam new kinds plug into: veths get the tap binding, SR-IOV VFs the sriov
 * binding (sriov.ts, only with `--sriov on`); a veth whose pod asked for it the masquerade binding
 * (masquerade.ts).
 */
import { FailedPreconditionError, InternalError } from '../../errors.js';
import type { NetworkBinding } from './binding.js';
import type { BindingContext, BindingKind, WiredInterface } from './types.js';
import type { LinkState } from './snapshot.js';
import { NodeSysfs, isVirtualFunction, pciAddressOf, type Sysfs } from './sysfs.js';

export type LinkClass = { kind: 'tap' } | { kind: 'sriov'; pciAddress: string };

/**
 * Classifies a link by what it is. A veth gets the tap binding. A PCI network function whose
 * device has a `physfn` link in sysfs is an SR-IOV VF. The PCI address comes from the parent
 * device rtnetlink reports (sysfs's class/net view shows the interfaces of the namespace that
 * mounted sysfs, the host's, and the VF lives in the pod's), else from class/net (sysfs.ts);
 * the device itself is looked up under `<sysfsRoot>/bus/pci/devices/<address>`, the same from
 * every namespace. `sysfs` is configurable so tests can use a fake tree.
 */
export async function classifyLink(link: LinkState, sysfs: Sysfs | string): Promise<LinkClass> {
  if (link.kind === 'veth') return { kind: 'tap' };
  const tree = typeof sysfs === 'string' ? new NodeSysfs(sysfs) : sysfs;
  const pciAddress = await pciAddressOf(tree, link);
  if (pciAddress !== undefined && (await isVirtualFunction(tree, pciAddress))) return { kind: 'sriov', pciAddress };
  throw new FailedPreconditionError(
    `no binding for ${link.name} (${link.kind ?? 'device'}${link.parentBus ? ` on ${link.parentBus}` : ''}): ` +
      'only veth interfaces (tap binding) and SR-IOV VFs (sriov binding) are supported',
  );
}

export interface BindingSelectorOptions {
  /** sriov may be left out where no VF can appear (tests); VFs are then refused like with --sriov off. */
  bindings: { tap: NetworkBinding<Extract<WiredInterface, { kind: 'tap' }>> } & {
    [K in Exclude<BindingKind, 'tap'>]?: NetworkBinding<Extract<WiredInterface, { kind: K }>>;
  };
  sysfs?: Sysfs;
  /**
   * VFs may be wired (`--sriov on`). Off, a VF is refused; a persisted VF state is still undone
   * (forState), whatever the setting.
   */
  sriovEnabled?: boolean;
}

export class BindingSelector {
  private readonly sysfs: Sysfs;

  constructor(private readonly options: BindingSelectorOptions) {
    this.sysfs = options.sysfs ?? new NodeSysfs('/sys');
  }

  /** The binding to wire `link` with; `ctx` says what the pod asked for it (masquerade). */
  async select(link: LinkState, ctx?: Pick<BindingContext, 'masquerade'>): Promise<NetworkBinding> {
    const cls = await classifyLink(link, this.sysfs);
    if (ctx?.masquerade && cls.kind !== 'tap') {
      throw new FailedPreconditionError(`${link.name} is not a veth; the masquerade binding the pod asks for needs one`);
    }
    switch (cls.kind) {
      case 'tap':
        if (ctx?.masquerade) {
          if (!this.options.bindings.masquerade) throw new FailedPreconditionError('the pod asks for the masquerade binding, which this netd has not');
          return this.options.bindings.masquerade as NetworkBinding;
        }
        return this.options.bindings.tap;
      case 'sriov':
        if (!this.options.sriovEnabled || !this.options.bindings.sriov) {
          throw new FailedPreconditionError(
            `${link.name} is an SR-IOV VF (PCI ${cls.pciAddress}); VF passthrough gives the VM a host PCI device and is off: start vmlet with --sriov on`,
          );
        }
        return this.options.bindings.sriov as NetworkBinding;
    }
  }

  /** The binding that can undo `state`. */
  forState(state: WiredInterface): NetworkBinding {
    const binding = (this.options.bindings as Record<string, NetworkBinding | undefined>)[state.kind];
    if (!binding) throw new InternalError(`persisted interface state of unknown kind ${JSON.stringify(state.kind)}`);
    return binding;
  }
}
