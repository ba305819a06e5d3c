/**
 * The masquerade binding (KubeVirt's): the VM behind NAT in the pod netns, the pod IP staying on
 * the CNI veth. The pure parts (plan, batches, nft table) are in masquerade_plan.ts; this runs them
 * through the netd side-effect seams (ip, nft, sysctl) in the binding protocol of binding.ts.
 *
 * Warm VMs: a warm netns's prewired bridge and TAP (made for the tap binding) are taken over at
 * claim time; their DHCP isolation table, meaningless without the veth on the bridge, is removed.
 */
import { NotFoundError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import type { IpRunner } from '../iproute.js';
import type { DhcpIsolation, NftRunner } from '../isolation.js';
import type { SysctlRunner } from '../sysctl.js';
import type { NetworkBinding } from './binding.js';
import {
  MASQUERADE_IPV6_NETNS_SYSCTLS,
  MASQUERADE_NETNS_SYSCTLS,
  masqueradeIpv6Network,
  masqueradeNetwork,
  masqueradeRemovalScript,
  masqueradeScript,
  masqueradeSysctls,
  masqueradeUnwireCommands,
  masqueradeWireCommands,
  planMasquerade,
} from './masquerade_plan.js';
import { linksOrGone, parseLinks, readInterfaceSnapshot, type InterfaceSnapshot, type LinkState } from './snapshot.js';
import type { BindingContext, MasqueradeWiredInterface } from './types.js';

export interface MasqueradeBindingOptions {
  ip: IpRunner;
  nft: NftRunner;
  sysctl: SysctlRunner;
  /** To remove a warm netns's prewired isolation table. */
  isolation: DhcpIsolation;
  /** The internal network (--masquerade-cidr). */
  cidr: string;
  /** The internal IPv6 network (--masquerade-ipv6-cidr); absent: the VM gets no IPv6 through this binding. */
  ipv6Cidr?: string;
  /** Which vmlet made the NAT tables (store/owner.ts). */
  ownerId: string;
  tapOwner?: { uid?: number; gid?: number };
  queues?: number;
  logger?: Logger;
}

export class MasqueradeBinding implements NetworkBinding<MasqueradeWiredInterface> {
  readonly kind = 'masquerade' as const;
  private readonly logger: Logger;

  constructor(private readonly options: MasqueradeBindingOptions) {
    this.logger = options.logger ?? silentLogger;
    // Bad CIDRs fail here, at start, not at a pod's wiring.
    masqueradeNetwork(options.cidr);
    if (options.ipv6Cidr !== undefined) masqueradeIpv6Network(options.ipv6Cidr);
  }

  async plan(ctx: BindingContext, snapshot?: InterfaceSnapshot): Promise<MasqueradeWiredInterface> {
    const current = snapshot ?? (await readInterfaceSnapshot(this.options.ip, ctx.netnsName, ctx.cniInterface.name));
    const ipv6 = this.options.ipv6Cidr !== undefined && ctx.cniInterface.ips.some((ip) => ip.family === 6);
    // IPv6's forwarding is read only when it will be set: a netns without IPv6 has no such sysctl.
    const sysctlsBefore = await this.options.sysctl.read(ctx.netnsName, [...MASQUERADE_NETNS_SYSCTLS, ...(ipv6 ? MASQUERADE_IPV6_NETNS_SYSCTLS : [])]);
    return planMasquerade(ctx, current, {
      // Each interface's own block of the CIDRs, by its position (masquerade_plan.ts).
      internal: masqueradeNetwork(this.options.cidr, ctx.index),
      ...(ipv6 ? { internal6: masqueradeIpv6Network(this.options.ipv6Cidr!, ctx.index) } : {}),
      ownerId: this.options.ownerId,
      sysctlsBefore,
      ...(this.options.tapOwner ? { tapOwner: this.options.tapOwner } : {}),
      ...(this.options.queues !== undefined ? { queues: this.options.queues } : {}),
    });
  }

  async wire(ctx: BindingContext, planned: MasqueradeWiredInterface): Promise<MasqueradeWiredInterface> {
    const started = performance.now();
    try {
      await this.options.ip.apply(ctx.netnsName, masqueradeWireCommands(planned));
      // The table names interfaces as strings and addresses; it could go in first, but nothing
      // reaches the VM before the bridge is up anyway, and a failed ip batch then leaves no table.
      await this.options.nft.apply(ctx.netnsName, masqueradeScript(planned));
      await this.options.sysctl.write(ctx.netnsName, masqueradeSysctls(planned.bridge.name, planned.ipv6 !== undefined));
      if (planned.prewired) await this.options.isolation.remove(ctx.netnsName, { uplink: planned.uplink.name, bridge: planned.bridge.name });
    } catch (err) {
      await this.unwire(ctx, planned).catch((undoErr) =>
        this.logger.error({ err: undoErr, netns: ctx.netnsName, ifname: planned.uplink.name }, 'cannot undo a failed masquerade wiring'),
      );
      throw err;
    }
    this.logger.debug({ netns: ctx.netnsName, ifname: planned.uplink.name, tap: planned.tap.name, ms: performance.now() - started }, 'interface wired (masquerade)');
    return planned;
  }

  async unwire(ctx: BindingContext, state: MasqueradeWiredInterface): Promise<void> {
    const links = await linksOrGone(this.options.ip, ctx.netnsName);
    if (!links) return;
    const commands = masqueradeUnwireCommands(state, links);
    if (commands.length > 0) await this.options.ip.apply(ctx.netnsName, commands);
    await this.options.nft.apply(ctx.netnsName, masqueradeRemovalScript(state));
    if (state.prewired) await this.options.isolation.remove(ctx.netnsName, { uplink: state.uplink.name, bridge: state.bridge.name });
    const netnsWide: readonly string[] = [...MASQUERADE_NETNS_SYSCTLS, ...MASQUERADE_IPV6_NETNS_SYSCTLS];
    const before = Object.fromEntries(Object.entries(state.sysctlsBefore).filter(([key]) => netnsWide.includes(key)));
    await this.options.sysctl.write(ctx.netnsName, before);
    this.logger.debug({ netns: ctx.netnsName, ifname: state.uplink.name }, 'interface unwired (masquerade)');
  }
}
