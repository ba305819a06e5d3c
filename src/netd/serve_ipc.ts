/** netd's side of the IPC channel: dispatches requests to the methods, one response per id. */
import { VmletError, Code, errorText } from '../errors.js';
import type { Logger } from '../log.js';
import type { NetdMethods, NetdRequest, NetdResponse } from './protocol.js';
import { TCP_SOCKET_METHOD, PortSockets, type TcpSocketParams } from './port_socket.js';

export function serveIpc(methods: NetdMethods, logger: Logger): void {
  if (!process.send) throw new Error('vmlet netd must be started by vmlet serve (no IPC channel)');
  const portSockets = new PortSockets();
  process.on('message', (msg: NetdRequest) => {
    void handle(msg);
  });
  // serve went away: netd has no one to answer, and a new serve starts a new netd.
  process.on('disconnect', () => {
    logger.info('serve disconnected; netd exiting');
    process.kill(process.pid, 'SIGTERM');
  });

  async function handle(msg: NetdRequest): Promise<void> {
    let response: NetdResponse;
    const started = process.hrtime.bigint();
    if ((msg.method as string) === TCP_SOCKET_METHOD) {
      // Answered with the socket itself as the IPC handle; sending closes netd's copy.
      try {
        const socket = await portSockets.tcpSocketInNetns(msg.params as TcpSocketParams);
        if (process.connected) process.send!({ id: msg.id, result: {} }, socket);
        else socket.destroy();
      } catch (err) {
        const code = err instanceof VmletError ? err.code : Code.INTERNAL;
        if (process.connected) process.send!({ id: msg.id, error: { code, message: errorText(err) } });
      }
      return;
    }
    try {
      const fn = methods[msg.method] as ((p: unknown) => Promise<unknown>) | undefined;
      if (typeof fn !== 'function') throw new VmletError(Code.UNIMPLEMENTED, `netd has no method ${String(msg.method)}`);
      response = { id: msg.id, result: await fn.call(methods, msg.params) };
    } catch (err) {
      const code = err instanceof VmletError ? err.code : Code.INTERNAL;
      if (code === Code.INTERNAL) logger.error({ err, method: msg.method }, 'netd call failed');
      response = { id: msg.id, error: { code, message: errorText(err) } };
    }
    logger.debug({ method: msg.method, durationMs: Number(process.hrtime.bigint() - started) / 1e6 }, 'netd call');
    if (process.connected) process.send!(response);
  }
}
