/**
 * Port-forward's netns step in netd: a TCP socket created inside a pod's network namespace
 * (native helper, on a short-lived thread), handed to serve over the IPC channel as a handle.
 * serve connects it to the VM's address itself, from PORT_FORWARD_SOURCE_IP
 * (src/network/port_forward_source.ts, which explains why the netns needs that address); the
 * socket stays in the pod netns, so serve never enters a namespace and no process is spawned per
 * connection. The source address and its nft rule are put in place once per netns (the first
 * port-forward to a pod: two `ip` runs and one `nft` run), remembered by the netns's inode.
 */
import net from 'node:net';
import { statSync } from 'node:fs';
import { FailedPreconditionError, InvalidArgumentError } from '../errors.js';
import { netnsNative } from '../native/netns.js';
import { isVmletNetnsName } from '../network/names.js';
import { ExecIpRunner, type IpRunner } from '../network/iproute.js';
import { ExecNftRunner, type NftRunner } from '../network/isolation.js';
import { podBridges, portForwardSourceCommands, portForwardSourceScript } from '../network/port_forward_source.js';

export const TCP_SOCKET_METHOD = 'tcpSocketInNetns';

export interface TcpSocketParams {
  netnsPath: string;
}

/** The netns name of `netnsPath` (only /run/netns/<vmlet netns>). */
function netnsNameOf(netnsPath: unknown): string {
  const m = typeof netnsPath === 'string' ? /^\/run\/netns\/([^/]+)$/.exec(netnsPath) : null;
  if (!m || !isVmletNetnsName(m[1]!)) throw new InvalidArgumentError(`not a vmlet netns path: ${JSON.stringify(netnsPath)}`);
  return m[1]!;
}

export class PortSockets {
  /** dev:ino of the netns files already given the source address; a new netns has a new inode. */
  private readonly prepared = new Map<string, Promise<void>>();

  constructor(
    private readonly ip: IpRunner = new ExecIpRunner(),
    private readonly nft: NftRunner = new ExecNftRunner(),
  ) {}

  /** A socket of the pod netns at `params.netnsPath`, whose bridges carry the source address. */
  async tcpSocketInNetns(params: TcpSocketParams): Promise<net.Socket> {
    const name = netnsNameOf(params?.netnsPath);
    const st = statSync(params.netnsPath);
    const key = `${st.dev}:${st.ino}`;
    let ready = this.prepared.get(key);
    if (!ready) {
      ready = this.prepare(name);
      this.prepared.set(key, ready);
      ready.catch(() => this.prepared.delete(key));
    }
    await ready;
    const fd = netnsNative().tcp4SocketInNetns(params.netnsPath);
    // Only carried to serve: not read here (an unconnected socket read fails with ENOTCONN, and
    // with several handles queued on the IPC channel that error came before the send and, with no
    // listener, ended netd).
    const socket = new net.Socket({ fd, readable: false, writable: false });
    socket.on('error', () => {});
    return socket;
  }

  private async prepare(netns: string): Promise<void> {
    const [links] = await this.ip.show(netns, [['link', 'show']]);
    const bridges = podBridges(links);
    if (bridges.length === 0) throw new FailedPreconditionError(`netns ${netns} has no pod bridge (the VM side is not wired)`);
    await this.ip.apply(netns, portForwardSourceCommands(bridges));
    await this.nft.apply(netns, portForwardSourceScript(bridges));
  }
}
