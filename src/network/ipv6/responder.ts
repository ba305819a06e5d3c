/**
 * The IPv6 side of one pod bridge: a DHCPv6 server on a UDP socket bound to the bridge (port 547,
 * joined to ff02::1:2 there) and unsolicited router advertisements written to a raw ICMPv6 socket
 * bound to it. The sockets are made, read and written by the native helper inside the pod netns
 * (sockets.ts); this is the part that decides (dhcp6_policy.ts) and answers. A datagram comes
 * with its source address without a zone and the index of the device it arrived on (in the pod
 * netns); the reply goes back with that index as its scope, so no device of netd's own
 * namespace is ever named.
 *
 * Router solicitations are not read (Node cannot read a raw socket without blocking a thread):
 * instead advertisements go out often at first, then at a steady pace well inside every lifetime
 * they announce, and at once when a DHCPv6 client speaks up (a guest that just brought its NIC
 * up solicits routers too, but its kernel gives up after three solicitations and then waits
 * for the next unsolicited one).
 */
import { silentLogger, type Logger } from '../../log.js';
import { decideDhcp6Reply, validateDhcp6Lease, type Dhcp6Lease } from './dhcp6_policy.js';
import { DHCP6_CLIENT_PORT, Dhcp6MessageType, decodeDhcp6Message, encodeDhcp6Message, MalformedDhcpPacketError } from './dhcp6_packet.js';
import { encodeRouterAdvert, type RouterAdvert } from './router_advert.js';

export interface Ipv6ResponderStats {
  advertises: number;
  replies: number;
  ignored: number;
  malformed: number;
  sendErrors: number;
  routerAdverts: number;
  routerAdvertErrors: number;
}

/** One datagram as the DHCPv6 socket hands it over: the source without a zone, the arrival device's index in the pod netns. */
export interface Datagram6 {
  data: Buffer;
  address: string;
  port: number;
  ifindex: number;
}

/** The DHCPv6 server's socket: the native endpoint on the bridge in the real thing, a fake in tests. */
export interface Udp6Socket {
  /** Starts delivering datagrams; once per socket. */
  receive(onDatagram: (datagram: Datagram6) => void, onError: (err: Error) => void): void;
  /** `to.ifindex` is the scope of a link-local `to.address`, in the socket's namespace. */
  send(packet: Buffer, to: { address: string; port: number; ifindex: number }): Promise<void>;
  /** Nothing is delivered after it. Idempotent. */
  close(): Promise<void>;
}

/** Where router advertisements go: a connected raw socket in the real thing, a recorder in tests. */
export interface RouterAdvertSink {
  send(packet: Buffer): Promise<void>;
  close(): Promise<void>;
}

export interface RaSchedule {
  /** Advertisements at `initialIntervalMs` before slowing down to `intervalMs`. */
  initialCount: number;
  initialIntervalMs: number;
  intervalMs: number;
  /** An extra advertisement (a DHCPv6 client spoke) no sooner than this after the last one. */
  minDelayBetweenMs: number;
}

/**
 * 10 advertisements 2 s apart, then one every 20 s (RFC 4861 allows 4..1800 s); extra ones 3 s
 * apart at least (RFC 4861 §10 MIN_DELAY_BETWEEN_RAS).
 */
export const DEFAULT_RA_SCHEDULE: RaSchedule = { initialCount: 10, initialIntervalMs: 2000, intervalMs: 20_000, minDelayBetweenMs: 3000 };

export interface Ipv6ResponderConfig {
  lease: Dhcp6Lease;
  serverDuid: Buffer;
  advert: RouterAdvert;
}

export class Ipv6Responder {
  readonly #socket: Udp6Socket;
  readonly #sink: RouterAdvertSink;
  readonly #log: Logger;
  readonly #lease: Dhcp6Lease;
  readonly #serverDuid: Buffer;
  readonly #advert: Buffer;
  readonly #schedule: RaSchedule;
  readonly #stats: Ipv6ResponderStats = { advertises: 0, replies: 0, ignored: 0, malformed: 0, sendErrors: 0, routerAdverts: 0, routerAdvertErrors: 0 };
  #timer: NodeJS.Timeout | undefined;
  #sent = 0;
  #lastAdvertAt = 0;
  #closing: Promise<void> | undefined;

  /**
   * Takes ownership of both; close() closes them. Throws InvalidArgumentError for a bad config, or
   * the socket's error when it cannot be read (and then owns nothing).
   */
  constructor(socket: Udp6Socket, sink: RouterAdvertSink, config: Ipv6ResponderConfig, options: { logger?: Logger; schedule?: RaSchedule } = {}) {
    this.#lease = validateDhcp6Lease(config.lease);
    this.#advert = encodeRouterAdvert(config.advert);
    this.#serverDuid = Buffer.from(config.serverDuid);
    this.#socket = socket;
    this.#sink = sink;
    this.#schedule = options.schedule ?? DEFAULT_RA_SCHEDULE;
    this.#log = (options.logger ?? silentLogger).child({ component: 'dhcp6' });
    socket.receive(this.#onDatagram, this.#onError);
    this.#advertise();
  }

  stats(): Ipv6ResponderStats {
    return { ...this.#stats };
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearTimeout(this.#timer);
      await this.#socket.close().catch((err: unknown) => this.#log.warn({ err }, 'closing the DHCPv6 socket failed'));
      await this.#sink.close().catch((err: unknown) => this.#log.warn({ err }, 'closing the router advertisement socket failed'));
    })();
    return this.#closing;
  }

  #advertise = (): void => {
    if (this.#closing) return;
    this.#sendAdvert();
    this.#sent += 1;
    const delay = this.#sent < this.#schedule.initialCount ? this.#schedule.initialIntervalMs : this.#schedule.intervalMs;
    this.#timer = setTimeout(this.#advertise, delay);
    this.#timer.unref();
  };

  #sendAdvert(): void {
    this.#lastAdvertAt = Date.now();
    this.#sink.send(this.#advert).then(
      () => void (this.#stats.routerAdverts += 1),
      (err: unknown) => {
        this.#stats.routerAdvertErrors += 1;
        this.#log.warn({ err }, 'could not send a router advertisement');
      },
    );
  }

  readonly #onError = (err: Error): void => {
    this.#log.error({ err }, 'DHCPv6 socket error');
  };

  readonly #onDatagram = (datagram: Datagram6): void => {
    if (this.#closing) return;
    try {
      this.#handle(datagram);
    } catch (err) {
      this.#stats.ignored += 1;
      this.#log.error({ err, from: datagram.address }, 'unexpected failure handling a DHCPv6 datagram');
    }
  };

  #handle(from: Datagram6): void {
    let decision;
    try {
      decision = decideDhcp6Reply(this.#lease, this.#serverDuid, decodeDhcp6Message(from.data));
    } catch (err) {
      if (!(err instanceof MalformedDhcpPacketError)) throw err;
      this.#stats.malformed += 1;
      this.#log.debug({ from: from.address, err: err.message }, 'dropped malformed DHCPv6 datagram');
      return;
    }
    // A client on the bridge is up now: let its kernel have the router without waiting.
    if (Date.now() - this.#lastAdvertAt >= this.#schedule.minDelayBetweenMs) this.#sendAdvert();
    if (decision.action === 'none') {
      this.#stats.ignored += 1;
      this.#log.debug({ from: from.address, reason: decision.reason }, decision.detail);
      return;
    }
    // The client's link-local address, scoped by the device it came in on (the bridge).
    const address = from.address;
    const reply = decision.message;
    this.#socket.send(encodeDhcp6Message(reply), { address, port: DHCP6_CLIENT_PORT, ifindex: from.ifindex }).then(
      () => {
        if (reply.type === Dhcp6MessageType.ADVERTISE) this.#stats.advertises += 1;
        else this.#stats.replies += 1;
        this.#log.debug({ to: address, reply: decision.reply, address: this.#lease.address }, 'sent DHCPv6 reply');
      },
      (err: unknown) => {
        this.#stats.sendErrors += 1;
        this.#log.warn({ err, to: address }, 'could not send DHCPv6 reply');
      },
    );
  }
}
