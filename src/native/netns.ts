/**
 * vmlet's native helper (native/netns.c): the network-namespace operations Node cannot do, each on
 * a short-lived thread of its own so that no process is spawned and no other thread of netd ever
 * changes namespace; sending an fd over a unix socket (SCM_RIGHTS), which Node cannot do either;
 * and reading a UDP socket of another namespace with each datagram's raw source address and
 * arrival device (Node's dgram names a link-local source's zone in netd's own namespace).
 * Loaded on first use; errors carry the errno name in `code`.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { UnavailableError, errorText } from '../errors.js';

/** Where `npm run build:native` puts the helper; the same path from src/ and from dist/ (both sit under the repo root). */
export const NATIVE_HELPER_PATH = fileURLToPath(new URL('../../native/build/vmlet_netns.node', import.meta.url));

export interface NetnsNative {
  /** A UDP socket bound to 0.0.0.0:port inside the namespace at `netnsPath`, broadcast enabled; returns its fd. */
  udp4SocketInNetns(netnsPath: string, port: number): number;
  /** An unconnected non-blocking TCP socket that belongs to the namespace at `netnsPath`; returns its fd. */
  tcp4SocketInNetns(netnsPath: string): number;
  /**
   * A non-blocking UDP socket bound to [::]:port and to `device` inside the namespace, member of
   * the multicast `group` on that device; returns its fd.
   */
  udp6SocketOnDevice(netnsPath: string, device: string, port: number, group: string): number;
  /**
   * A blocking raw ICMPv6 socket bound to `device` inside the namespace, connected to the
   * link-local `destination` there, hop limit 255, receiving nothing; returns its fd.
   */
  icmp6SocketOnDevice(netnsPath: string, device: string, destination: string): number;
  /**
   * Takes over the UDP socket `fd` (one of udp6SocketOnDevice's) and reads it with recvmsg on a
   * thread of its own: each datagram reaches `onDatagram` on the JS thread with its source
   * address as text without a zone, its source port and the index of the device it arrived on,
   * in the socket's namespace (a receive error comes as `err`). When it throws, `fd` is still
   * the caller's.
   */
  udp6Endpoint(fd: number, onDatagram: (err: NodeJS.ErrnoException | null, data?: Buffer, address?: string, port?: number, ifindex?: number) => void): Udp6EndpointHandle;
  /** A new network namespace with loopback up, bind-mounted on the existing file `path`. */
  createNetns(path: string): void;
  /** Detaches the namespace mounted on `path` (lazily) and removes the file; a missing file is fine. */
  removeNetns(path: string): void;
  /**
   * Sends `text` on the connected unix stream socket `socketFd` with `fd` as SCM_RIGHTS, without
   * blocking; returns how many bytes of `text` went (the caller writes the rest).
   */
  sendFd(socketFd: number, text: string, fd: number): number;
}

/** A socket taken over by udp6Endpoint. */
export interface Udp6EndpointHandle {
  /** One non-blocking sendto with `ifindex` (of the socket's namespace) as the scope id; returns the bytes sent. */
  send(data: Buffer, address: string, port: number, ifindex: number): number;
  /** Ends the receive thread (joined) and closes the socket; nothing is delivered after it. Idempotent. */
  close(): void;
}

let loaded: NetnsNative | undefined;

export function netnsNative(): NetnsNative {
  if (!loaded) {
    try {
      loaded = createRequire(import.meta.url)(NATIVE_HELPER_PATH) as NetnsNative;
    } catch (err) {
      throw new UnavailableError(`vmlet's native helper ${NATIVE_HELPER_PATH} cannot be loaded (build it with npm run build:native): ${errorText(err)}`, { cause: err });
    }
  }
  return loaded;
}
