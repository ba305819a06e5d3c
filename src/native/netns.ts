/**
 * vmlet's native helper (native/netns.c): the network-namespace operations Node cannot do, each on
 * a short-lived thread of its own so that no process is spawned and no other thread of netd ever
 * changes namespace; and sending an fd over a unix socket (SCM_RIGHTS), which Node cannot do either. Loaded on first use; errors carry the errno name in `code`.
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
