/**
 * Runs inside a sandbox's network namespace (started by bind_in_netns.ts under nsenter): binds
 * the DHCP server port there, hands the socket to the parent over IPC and exits once the parent
 * lets go. Only the socket crosses namespaces; nothing else runs in the sandbox.
 *
 * argv: <port>. IPC messages: { kind: 'bound', port } with the socket, or { kind: 'error', code, message }.
 */
import dgram from 'node:dgram';

const send = process.send?.bind(process);
if (!send) {
  process.stderr.write('bind_socket_child: must be started with an IPC channel\n');
  process.exit(2);
}
const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  send({ kind: 'error', code: 'EINVAL', message: `invalid port ${process.argv[2]}` }, () => process.exit(2));
} else {
  const socket = dgram.createSocket({ type: 'udp4' });
  socket.once('error', (err: NodeJS.ErrnoException) => {
    send({ kind: 'error', code: err.code ?? 'UNKNOWN', message: err.message }, () => process.exit(1));
  });
  // No reuseAddr: a second server on the same port in one namespace is a bug that should fail loudly.
  socket.bind({ port, address: '0.0.0.0' }, () => {
    socket.setBroadcast(true);
    send({ kind: 'bound', port: socket.address().port }, socket);
  });
  // The parent disconnects once it holds the socket (or gives up); our copy is then surplus.
  process.once('disconnect', () => {
    try {
      socket.close(() => process.exit(0));
    } catch {
      process.exit(0);
    }
  });
}
