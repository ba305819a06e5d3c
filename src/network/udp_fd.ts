/**
 * Turns a UDP socket fd that vmlet's native helper made inside a pod netns (native/netns.c) into
 * a Node dgram socket. With an fd, bind() either throws before taking the fd over (then the fd is
 * still ours to close) or emits 'listening', at once or a tick later.
 */
import dgram from 'node:dgram';
import { closeSync } from 'node:fs';
import { FailedPreconditionError, errorText } from '../errors.js';

/** `what` names the socket in errors ("the socket bound in /run/netns/x", "the DHCPv6 socket of br0"). */
export async function adoptUdpFd(fd: number, type: 'udp4' | 'udp6', what: string): Promise<dgram.Socket> {
  const socket = dgram.createSocket({ type });
  let listening = false;
  socket.once('listening', () => (listening = true));
  try {
    socket.bind({ fd });
  } catch (err) {
    closeSync(fd);
    socket.close();
    throw new FailedPreconditionError(`cannot adopt ${what}: ${errorText(err)}`, { cause: err });
  }
  if (!listening) {
    await new Promise<void>((resolve, reject) => {
      socket.once('listening', () => resolve());
      socket.once('error', (err) => {
        socket.close(); // owns the fd by now
        reject(new FailedPreconditionError(`cannot adopt ${what}: ${errorText(err)}`, { cause: err }));
      });
    });
  }
  return socket;
}
