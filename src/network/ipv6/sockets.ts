/**
 * The sockets of a pod bridge's IPv6 responder, made by vmlet's native helper inside the pod netns
 * (a device index and a multicast membership only make sense there).
 *
 * The DHCPv6 socket is read and written by the native helper too (udp6Endpoint), not adopted by
 * Node's dgram: a client's link-local source carries the scope id of the pod bridge in the pod
 * netns, and dgram turns it into a zone name with if_indextoname in netd's own namespace, which
 * fails (ENXIO, the datagram lost) or names another device. The native path hands over the
 * address without a zone and the arrival index, and replies with that index as the scope id.
 */
import { close as closeFd, closeSync, write } from 'node:fs';
import { FailedPreconditionError, NotFoundError, UnavailableError, errorText } from '../../errors.js';
import { netnsNative, type Udp6EndpointHandle } from '../../native/netns.js';
import { assertInterfaceName } from '../names.js';
import { ALL_DHCP_SERVERS, DHCP6_SERVER_PORT } from './dhcp6_packet.js';
import type { RouterAdvertSink, Udp6Socket } from './responder.js';
import { ALL_NODES } from './router_advert.js';

function nativeFailure(err: unknown, what: string, netnsPath: string, device: string): Error {
  if (err instanceof UnavailableError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new NotFoundError(`network namespace ${netnsPath} is not there: ${errorText(err)}`, { cause: err });
  if (code === 'ENODEV') return new NotFoundError(`no device ${device} in ${netnsPath}: ${errorText(err)}`, { cause: err });
  return new FailedPreconditionError(`cannot make the ${what} on ${device} in ${netnsPath}: ${errorText(err)}`, { cause: err });
}

/**
 * A UDP socket on [::]:port bound to `device` in the netns, joined to the multicast `group` there.
 * Nothing is read until receive(); sending needs receive() first (the native endpoint does both).
 */
export function udp6SocketOnDevice(netnsPath: string, device: string, port: number, group: string): Udp6Socket {
  assertInterfaceName(device);
  const what = `the UDP socket on ${device}:${port} in ${netnsPath}`;
  let fd: number;
  try {
    fd = netnsNative().udp6SocketOnDevice(netnsPath, device, port, group);
  } catch (err) {
    throw nativeFailure(err, `UDP socket on port ${port}`, netnsPath, device);
  }
  let endpoint: Udp6EndpointHandle | undefined;
  let closed = false;
  return {
    receive: (onDatagram, onError) => {
      if (closed || endpoint) throw new FailedPreconditionError(`${what} is ${closed ? 'closed' : 'already being read'}`);
      try {
        endpoint = netnsNative().udp6Endpoint(fd, (err, data, address, sourcePort, ifindex) => {
          try {
            if (err) onError(err);
            else onDatagram({ data: data!, address: address!, port: sourcePort!, ifindex: ifindex! });
          } catch (thrown) {
            onError(thrown instanceof Error ? thrown : new Error(String(thrown)));
          }
        });
      } catch (err) {
        throw new FailedPreconditionError(`cannot read ${what}: ${errorText(err)}`, { cause: err });
      }
    },
    send: async (packet, to) => {
      if (closed || !endpoint) throw new FailedPreconditionError(`${what} is ${closed ? 'closed' : 'not being read yet'}`);
      endpoint.send(packet, to.address, to.port, to.ifindex);
    },
    close: async () => {
      if (closed) return;
      closed = true;
      if (endpoint) endpoint.close();
      else closeSync(fd);
    },
  };
}

/** [::]:547 bound to `bridge` in the netns, joined to ff02::1:2 there. */
export async function bindDhcp6SocketOnBridge(netnsPath: string, bridge: string): Promise<Udp6Socket> {
  return udp6SocketOnDevice(netnsPath, bridge, DHCP6_SERVER_PORT, ALL_DHCP_SERVERS);
}

/** A raw ICMPv6 socket on `bridge` in the netns, connected to ff02::1: each send is one advertisement. */
export function routerAdvertSinkOnBridge(netnsPath: string, bridge: string): RouterAdvertSink {
  assertInterfaceName(bridge);
  let fd: number;
  try {
    fd = netnsNative().icmp6SocketOnDevice(netnsPath, bridge, ALL_NODES);
  } catch (err) {
    throw nativeFailure(err, 'router advertisement socket', netnsPath, bridge);
  }
  let closed: Promise<void> | undefined;
  // The fd is closed only after the last write: a write still queued could otherwise hit a reused fd number.
  let last: Promise<unknown> = Promise.resolve();
  return {
    send: (packet) => {
      if (closed) return Promise.reject(new FailedPreconditionError('router advertisement socket is closed'));
      const sent = new Promise<void>((resolve, reject) => write(fd, packet, (err) => (err ? reject(err) : resolve())));
      last = sent.catch(() => undefined);
      return sent;
    },
    close: () => (closed ??= last.then(() => new Promise<void>((resolve) => closeFd(fd, () => resolve())))),
  };
}
