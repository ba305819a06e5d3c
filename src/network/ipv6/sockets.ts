/**
 * The sockets of a pod bridge's IPv6 responder, made by vmlet's native helper inside the pod netns
 * (a device index and a multicast membership only make sense there) and adopted here.
 */
import dgram from 'node:dgram';
import { close as closeFd, write } from 'node:fs';
import { FailedPreconditionError, NotFoundError, UnavailableError, errorText } from '../../errors.js';
import { netnsNative } from '../../native/netns.js';
import { assertInterfaceName } from '../names.js';
import { ALL_DHCP_SERVERS, DHCP6_SERVER_PORT } from './dhcp6_packet.js';
import type { RouterAdvertSink } from './responder.js';
import { ALL_NODES } from './router_advert.js';
import { adoptUdpFd } from '../udp_fd.js';

function nativeFailure(err: unknown, what: string, netnsPath: string, device: string): Error {
  if (err instanceof UnavailableError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new NotFoundError(`network namespace ${netnsPath} is not there: ${errorText(err)}`, { cause: err });
  if (code === 'ENODEV') return new NotFoundError(`no device ${device} in ${netnsPath}: ${errorText(err)}`, { cause: err });
  return new FailedPreconditionError(`cannot make the ${what} on ${device} in ${netnsPath}: ${errorText(err)}`, { cause: err });
}

/** [::]:547 bound to `bridge` in the netns, joined to ff02::1:2 there. */
export async function bindDhcp6SocketOnBridge(netnsPath: string, bridge: string): Promise<dgram.Socket> {
  assertInterfaceName(bridge);
  let fd: number;
  try {
    fd = netnsNative().udp6SocketOnDevice(netnsPath, bridge, DHCP6_SERVER_PORT, ALL_DHCP_SERVERS);
  } catch (err) {
    throw nativeFailure(err, 'DHCPv6 socket', netnsPath, bridge);
  }
  return adoptUdpFd(fd, 'udp6', `the DHCPv6 socket of ${bridge}`);
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
