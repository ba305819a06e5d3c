/**
 * The DHCP responder of each sandbox whose VM side is prepared: a DhcpServer on a socket bound to
 * :67 inside the sandbox's netns, answering only the leases of its VM, and, for each pod bridge
 * whose VM has IPv6 addresses, a DHCPv6 server and router advertisements on that bridge
 * (network/ipv6/responder.ts). Started with the VM side
 * (and again by a restarted netd), stopped with the teardown or when netd exits.
 */
import type { Logger } from '../log.js';
import { bindDhcpSocketInNetns } from '../network/dhcp/bind_in_netns.js';
import type { DhcpLease } from '../network/dhcp/lease_policy.js';
import { DhcpServer, type DhcpServerStats } from '../network/dhcp/server.js';
import { Ipv6Responder, type Ipv6ResponderStats } from '../network/ipv6/responder.js';
import type { BridgeIpv6Service } from '../network/ipv6/services.js';
import { bindDhcp6SocketOnBridge, routerAdvertSinkOnBridge } from '../network/ipv6/sockets.js';

/** A running responder, as netd uses it. */
export interface DhcpResponder {
  /** DHCPv4 counters, and the IPv6 responders' by bridge when there are any. */
  stats(): DhcpServerStats & { ipv6?: Record<string, Ipv6ResponderStats> };
  close(): Promise<void>;
}

/** Starts a responder for `leases` (and `ipv6`) in the netns at `netnsPath`: the seam unit tests fake. */
export type DhcpResponderFactory = (
  netnsPath: string,
  leases: readonly DhcpLease[],
  logger: Logger,
  ipv6?: readonly BridgeIpv6Service[],
) => Promise<DhcpResponder>;

const NO_DHCP4: DhcpServerStats = { offers: 0, acks: 0, naks: 0, ignored: 0, malformed: 0, releases: 0, declines: 0, sendErrors: 0 };

/** The real responder: vmlet's DHCP server on a socket the native helper binds in the netns, and the IPv6 ones. */
export const startDhcpServerInNetns: DhcpResponderFactory = async (netnsPath, leases, logger, ipv6 = []) => {
  const started: { close(): Promise<void> }[] = [];
  try {
    let server: DhcpServer | undefined;
    if (leases.length > 0) {
      server = new DhcpServer(await bindDhcpSocketInNetns(netnsPath), { logger });
      started.push(server);
      for (const lease of leases) server.setLease(lease);
    }
    const v6 = new Map<string, Ipv6Responder>();
    for (const service of ipv6) {
      const socket = await bindDhcp6SocketOnBridge(netnsPath, service.bridge);
      let sink;
      try {
        sink = routerAdvertSinkOnBridge(netnsPath, service.bridge);
      } catch (err) {
        await socket.close();
        throw err;
      }
      let responder: Ipv6Responder;
      try {
        responder = new Ipv6Responder(socket, sink, service, { logger: logger.child({ bridge: service.bridge }) });
      } catch (err) {
        await socket.close();
        await sink.close();
        throw err;
      }
      started.push(responder);
      v6.set(service.bridge, responder);
    }
    return {
      stats: () => ({
        ...(server?.stats() ?? NO_DHCP4),
        ...(v6.size > 0 ? { ipv6: Object.fromEntries([...v6].map(([bridge, r]) => [bridge, r.stats()])) } : {}),
      }),
      close: async () => {
        await Promise.all(started.map((s) => s.close()));
      },
    };
  } catch (err) {
    await Promise.all(started.map((s) => s.close()));
    throw err;
  }
};

export class DhcpResponders {
  private readonly running = new Map<string, DhcpResponder>();

  constructor(
    private readonly startResponder: DhcpResponderFactory,
    private readonly logger: Logger,
  ) {}

  /** (Re)starts the responder of `sandboxId`. */
  async start(sandboxId: string, netnsPath: string, leases: readonly DhcpLease[], ipv6: readonly BridgeIpv6Service[] = []): Promise<void> {
    await this.stop(sandboxId);
    const logger = this.logger.child({ sandboxId });
    this.running.set(sandboxId, await (ipv6.length > 0 ? this.startResponder(netnsPath, leases, logger, ipv6) : this.startResponder(netnsPath, leases, logger)));
  }

  async stop(sandboxId: string): Promise<void> {
    const responder = this.running.get(sandboxId);
    if (!responder) return;
    this.running.delete(sandboxId);
    await responder.close();
  }

  get(sandboxId: string): DhcpResponder | undefined {
    return this.running.get(sandboxId);
  }

  async stopAll(): Promise<void> {
    for (const id of [...this.running.keys()]) await this.stop(id);
  }
}
