/**
 * The DHCP responder of each sandbox whose VM side is prepared: a DhcpServer on a socket bound to
 * :67 inside the sandbox's netns, answering only the leases of its VM. Started with the VM side
 * (and again by a restarted netd), stopped with the teardown or when netd exits.
 */
import type { Logger } from '../log.js';
import { bindDhcpSocketInNetns } from '../network/dhcp/bind_in_netns.js';
import type { DhcpLease } from '../network/dhcp/lease_policy.js';
import { DhcpServer, type DhcpServerStats } from '../network/dhcp/server.js';

/** A running responder, as netd uses it. */
export interface DhcpResponder {
  stats(): DhcpServerStats;
  close(): Promise<void>;
}

/** Starts a responder for `leases` in the netns at `netnsPath`: the seam unit tests fake. */
export type DhcpResponderFactory = (netnsPath: string, leases: readonly DhcpLease[], logger: Logger) => Promise<DhcpResponder>;

/** The real responder: vmlet's DHCP server on a socket the native helper binds in the netns. */
export const startDhcpServerInNetns: DhcpResponderFactory = async (netnsPath, leases, logger) => {
  const server = new DhcpServer(await bindDhcpSocketInNetns(netnsPath), { logger });
  try {
    for (const lease of leases) server.setLease(lease);
  } catch (err) {
    await server.close();
    throw err;
  }
  return server;
};

export class DhcpResponders {
  private readonly running = new Map<string, DhcpResponder>();

  constructor(
    private readonly startResponder: DhcpResponderFactory,
    private readonly logger: Logger,
  ) {}

  /** (Re)starts the responder of `sandboxId`. */
  async start(sandboxId: string, netnsPath: string, leases: readonly DhcpLease[]): Promise<void> {
    await this.stop(sandboxId);
    this.running.set(sandboxId, await this.startResponder(netnsPath, leases, this.logger.child({ sandboxId })));
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
