/**
 * Gets a UDP socket bound to the DHCP server port inside a sandbox's network namespace while the
 * server itself stays in the host namespace. vmlet's native helper (native/netns.c) makes
 * the socket on a short-lived thread that alone enters the namespace; this adopts its fd.
 */
import dgram from 'node:dgram';
import { isAbsolute, normalize } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, UnavailableError, errorText } from '../../errors.js';
import { netnsNative } from '../../native/netns.js';
import { adoptUdpFd } from '../udp_fd.js';

export interface BindInNetnsOptions {
  /** UDP port to bind; the DHCP server port unless a test says otherwise. */
  port?: number;
}

export const DHCP_SERVER_PORT = 67;

/** Binds 0.0.0.0:port (67 by default) in the namespace at `netnsPath` and returns the socket, broadcast enabled. */
export async function bindDhcpSocketInNetns(netnsPath: string, options: BindInNetnsOptions = {}): Promise<dgram.Socket> {
  validateNetnsPath(netnsPath);
  const port = options.port ?? DHCP_SERVER_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`port ${port} is not in 1..65535`);
  let fd: number;
  try {
    fd = netnsNative().udp4SocketInNetns(netnsPath, port);
  } catch (err) {
    if (err instanceof UnavailableError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new NotFoundError(`network namespace ${netnsPath} is not there: ${errorText(err)}`, { cause: err });
    throw new FailedPreconditionError(`cannot bind UDP port ${port} in ${netnsPath}: ${code ?? ''} ${errorText(err)}`, { cause: err });
  }
  return adoptUdpFd(fd, 'udp4', `the socket bound in ${netnsPath}`);
}

/** A namespace file path: absolute, already normalised, nothing odd for the helper to open. */
function validateNetnsPath(path: string): void {
  if (typeof path !== 'string' || path.length === 0 || path.length > 4096 || path.includes('\0')) {
    throw new InvalidArgumentError('network namespace path must be a non-empty string without NUL');
  }
  if (!isAbsolute(path) || normalize(path) !== path || path.endsWith('/')) {
    throw new InvalidArgumentError(`network namespace path ${JSON.stringify(path)} must be absolute and normalised`);
  }
}
