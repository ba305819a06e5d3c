/**
 * Port-forward's netns step in netd: a TCP socket created inside a pod's network namespace
 * (native helper, on a short-lived thread), handed to serve over the IPC channel as a handle.
 * serve connects it to the VM's address itself; the socket stays in the pod netns, so serve never
 * enters a namespace and no process is spawned per connection.
 */
import net from 'node:net';
import { InvalidArgumentError } from '../errors.js';
import { netnsNative } from '../native/netns.js';
import { isVmletNetnsName } from '../network/names.js';

export const TCP_SOCKET_METHOD = 'tcpSocketInNetns';

export interface TcpSocketParams {
  netnsPath: string;
}

/** A socket of the pod netns at `netnsPath` (only /run/netns/<vmlet netns>). */
export function tcpSocketInNetns(params: TcpSocketParams): net.Socket {
  const path = params?.netnsPath;
  const m = typeof path === 'string' ? /^\/run\/netns\/([^/]+)$/.exec(path) : null;
  if (!m || !isVmletNetnsName(m[1]!)) throw new InvalidArgumentError(`not a vmlet netns path: ${JSON.stringify(path)}`);
  const fd = netnsNative().tcp4SocketInNetns(path);
  return new net.Socket({ fd });
}
