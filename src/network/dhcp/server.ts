/**
 * The socket side of vmlet's DHCP server: reads datagrams from an already bound UDP socket
 * (bound to :67 inside the sandbox's network namespace, see bind_in_netns.ts), asks the lease
 * policy what to answer and sends it. Only MACs with a registered lease ever get a reply.
 */
import type dgram from 'node:dgram';
import { FailedPreconditionError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { normalizeMac } from './ipv4.js';
import { clientMac, decideReply, validateLease, type DhcpDecision, type DhcpLease } from './lease_policy.js';
import { decodeMessage, encodeMessage, MalformedDhcpPacketError, type DhcpMessage } from './packet.js';

export interface DhcpServerStats {
  offers: number;
  acks: number;
  naks: number;
  /** Well-formed requests that got no reply: unknown MAC, another server selected, relayed, … */
  ignored: number;
  /** Datagrams that did not decode as DHCP. */
  malformed: number;
  releases: number;
  declines: number;
  /** Replies the kernel refused to send. */
  sendErrors: number;
}

export interface DhcpServerOptions {
  logger?: Logger;
}

const BROADCAST_ADDRESS = '255.255.255.255';
const UNREACHABLE = new Set(['ENETUNREACH', 'EHOSTUNREACH']);

export class DhcpServer {
  readonly #socket: dgram.Socket;
  readonly #log: Logger;
  readonly #leases = new Map<string, DhcpLease>();
  readonly #stats: DhcpServerStats = { offers: 0, acks: 0, naks: 0, ignored: 0, malformed: 0, releases: 0, declines: 0, sendErrors: 0 };
  #closing: Promise<void> | undefined;

  /** Takes ownership of `socket`, which must already be bound; close() closes it. */
  constructor(socket: dgram.Socket, options: DhcpServerOptions = {}) {
    try {
      socket.address();
    } catch (err) {
      throw new FailedPreconditionError('DHCP server needs a bound UDP socket', { cause: err });
    }
    this.#socket = socket;
    this.#log = (options.logger ?? silentLogger).child({ component: 'dhcp' });
    // Replies to clients without an address go to 255.255.255.255.
    socket.setBroadcast(true);
    socket.on('message', this.#onMessage);
    socket.on('error', this.#onError);
  }

  /** Adds or replaces the lease for `lease.mac`; throws InvalidArgumentError for a bad lease. */
  setLease(lease: DhcpLease): void {
    const valid = validateLease(lease);
    this.#leases.set(valid.mac, valid);
  }

  /** Stops answering `mac`; returns whether a lease was registered. */
  removeLease(mac: string): boolean {
    return this.#leases.delete(normalizeMac(mac));
  }

  leaseFor(mac: string): DhcpLease | undefined {
    return this.#leases.get(normalizeMac(mac));
  }

  stats(): DhcpServerStats {
    return { ...this.#stats };
  }

  /** Stops answering and closes the socket. Safe to call more than once. */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      this.#socket.off('message', this.#onMessage);
      try {
        this.#socket.close(() => resolve());
      } catch {
        resolve(); // already closed by its owner before us
      }
    }).finally(() => this.#socket.off('error', this.#onError));
    return this.#closing;
  }

  readonly #onError = (err: Error): void => {
    this.#log.error({ err }, 'DHCP socket error');
  };

  readonly #onMessage = (datagram: Buffer, from: dgram.RemoteInfo): void => {
    if (this.#closing) return;
    try {
      this.#handle(datagram, from);
    } catch (err) {
      // A bug must not take netd down with it: one datagram is lost, the server keeps serving.
      this.#stats.ignored += 1;
      this.#log.error({ err, from: from.address }, 'unexpected failure handling a DHCP datagram');
    }
  };

  #handle(datagram: Buffer, from: dgram.RemoteInfo): void {
    let request: DhcpMessage;
    try {
      request = decodeMessage(datagram);
    } catch (err) {
      if (!(err instanceof MalformedDhcpPacketError)) throw err;
      this.#stats.malformed += 1;
      this.#log.debug({ from: from.address, err: err.message }, 'dropped malformed DHCP datagram');
      return;
    }
    const mac = clientMac(request);
    const decision = decideReply(mac === undefined ? undefined : this.#leases.get(mac), request);
    if (decision.action === 'none') this.#recordNoReply(decision, mac);
    else this.#send(decision, mac);
  }

  #recordNoReply(decision: Extract<DhcpDecision, { action: 'none' }>, mac: string | undefined): void {
    if (decision.reason === 'released') {
      this.#stats.releases += 1;
      this.#log.info({ mac }, decision.detail);
    } else if (decision.reason === 'declined') {
      this.#stats.declines += 1;
      this.#log.warn({ mac }, decision.detail);
    } else {
      this.#stats.ignored += 1;
      this.#log.debug({ mac, reason: decision.reason }, decision.detail);
    }
  }

  #send(decision: Extract<DhcpDecision, { action: 'reply' }>, mac: string | undefined): void {
    const datagram = encodeMessage(decision.message);
    const { destination } = decision;
    // "link-unicast" (no broadcast flag, no ciaddr) goes to yiaddr: the tap binding keeps a
    // permanent neighbor entry and a /32 route for it on the VM's bridge, so the frame reaches
    // chaddr on the right bridge even with several bridges in the netns. Without that path the
    // send fails as unreachable and falls back to a broadcast (RFC 2131 §4.1 allows that).
    const address = destination.kind === 'broadcast' ? BROADCAST_ADDRESS : destination.address;
    this.#transmit(datagram, destination.port, address, (err) => {
      if (err && address !== BROADCAST_ADDRESS && UNREACHABLE.has((err as NodeJS.ErrnoException).code ?? '')) {
        // No path to the client's address (no tap binding in front of this server): the client
        // still hears a broadcast carrying its chaddr and xid.
        this.#log.debug({ mac, address, code: (err as NodeJS.ErrnoException).code }, 'unicast reply unroutable; broadcasting it');
        this.#transmit(datagram, destination.port, BROADCAST_ADDRESS, (retryErr) => this.#recordSent(decision, mac, retryErr));
        return;
      }
      this.#recordSent(decision, mac, err);
    });
  }

  #transmit(datagram: Buffer, port: number, address: string, done: (err: Error | null) => void): void {
    try {
      this.#socket.send(datagram, port, address, (err) => done(err));
    } catch (err) {
      done(err instanceof Error ? err : new Error(String(err))); // socket closed meanwhile
    }
  }

  #recordSent(decision: Extract<DhcpDecision, { action: 'reply' }>, mac: string | undefined, err: Error | null): void {
    if (err) {
      this.#stats.sendErrors += 1;
      this.#log.warn({ mac, err: err.message, reply: decision.reply }, 'could not send DHCP reply');
      return;
    }
    if (decision.reply === 'offer') this.#stats.offers += 1;
    else if (decision.reply === 'ack') this.#stats.acks += 1;
    else this.#stats.naks += 1;
    this.#log.debug({ mac, reply: decision.reply, yiaddr: decision.message.yiaddr }, 'sent DHCP reply');
  }
}
