/**
 * A stand-in for libvirtd's side of the RPC protocol on a temporary unix socket, for unit tests
 * of the transport, client and reconnecting connection. It answers the handshake by itself
 * (auth-list, connect-open, connect-close, lib-version, event registration) and lets each test
 * decide what happens to every other call: answer, fail, delay, reorder, or break the socket.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodePacket, encodePacket, MessageStatus, MessageType, PacketFramer, type Packet } from '../../../src/libvirt/rpc/packet.js';
import { AuthType, Proc, REMOTE_PROGRAM, REMOTE_PROTOCOL_VERSION, writeRemoteError, type RemoteError } from '../../../src/libvirt/rpc/remote_protocol.js';
import { XdrWriter } from '../../../src/libvirt/rpc/xdr.js';

export type CallHook = (call: Packet, conn: FakeConnection) => boolean | void;

export function remoteError(code: number, message: string, domain = 10): RemoteError {
  return { code, domain, message, level: 2, dom: null, str1: null, str2: message, str3: null, int1: -1, int2: -1 };
}

export class FakeConnection {
  readonly calls: Packet[] = [];
  private readonly framer = new PacketFramer();

  constructor(
    readonly socket: Socket,
    private readonly server: FakeLibvirtd,
  ) {
    socket.on('data', (chunk: Buffer) => {
      for (const raw of this.framer.push(chunk)) {
        const packet = decodePacket(raw);
        this.calls.push(packet);
        this.server.dispatch(packet, this);
      }
    });
    socket.on('error', () => {});
  }

  replyPacket(call: Packet, payload: Buffer = Buffer.alloc(0)): Buffer {
    return encodePacket({ ...call.header, type: MessageType.REPLY, status: MessageStatus.OK }, payload);
  }

  reply(call: Packet, payload: Buffer = Buffer.alloc(0)): void {
    this.socket.write(this.replyPacket(call, payload));
  }

  replyError(call: Packet, error: RemoteError): void {
    const w = new XdrWriter();
    writeRemoteError(w, error);
    this.socket.write(encodePacket({ ...call.header, type: MessageType.REPLY, status: MessageStatus.ERROR }, w.finish()));
  }

  /** An asynchronous message (event) from the daemon. */
  message(procedure: number, payload: Buffer, program = REMOTE_PROGRAM): void {
    this.socket.write(this.messagePacket(procedure, payload, program));
  }

  messagePacket(procedure: number, payload: Buffer, program = REMOTE_PROGRAM): Buffer {
    return encodePacket({ program, version: 1, procedure, type: MessageType.MESSAGE, serial: 0, status: MessageStatus.OK }, payload);
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export class FakeLibvirtd {
  readonly connections: FakeConnection[] = [];
  authTypes: number[] = [AuthType.NONE];
  onCall: CallHook = () => {};

  private constructor(
    private server: Server,
    readonly socketPath: string,
    private readonly dir: string,
  ) {}

  static async start(): Promise<FakeLibvirtd> {
    const dir = await mkdtemp(join(tmpdir(), 'vmlet-fake-libvirtd-'));
    const socketPath = join(dir, 'libvirt-sock');
    const fake: FakeLibvirtd = new FakeLibvirtd(createServer(), socketPath, dir);
    await fake.listen();
    return fake;
  }

  private listen(): Promise<void> {
    this.server = createServer((socket) => this.connections.push(new FakeConnection(socket, this)));
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.socketPath, () => resolve());
    });
  }

  get lastConnection(): FakeConnection {
    const conn = this.connections.at(-1);
    if (!conn) throw new Error('no connection yet');
    return conn;
  }

  dispatch(call: Packet, conn: FakeConnection): void {
    // The hook sees every program (the qemu program's agent command too); the defaults are remote's.
    if (this.onCall(call, conn) === true) return;
    if (call.header.program !== REMOTE_PROGRAM || call.header.version !== REMOTE_PROTOCOL_VERSION) return;
    switch (call.header.procedure) {
      case Proc.AUTH_LIST:
        conn.reply(call, new XdrWriter().array(this.authTypes, 20, (w, t) => w.int(t)).finish());
        return;
      case Proc.AUTH_POLKIT:
        conn.reply(call, new XdrWriter().int(1).finish());
        return;
      case Proc.CONNECT_OPEN:
      case Proc.CONNECT_CLOSE:
        conn.reply(call);
        return;
      case Proc.CONNECT_GET_LIB_VERSION:
        conn.reply(call, new XdrWriter().uhyper(9_000_000n).finish());
        return;
      case Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY:
        conn.reply(call, new XdrWriter().int(1).finish());
        return;
      default:
      // left to the test's onCall hook; unanswered otherwise
    }
  }

  /** Stops listening and drops every connection, like a daemon that exits. */
  async stop(): Promise<void> {
    for (const conn of this.connections) conn.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Listens again on the same path, like a restarted daemon. */
  async restart(): Promise<void> {
    await rm(this.socketPath, { force: true });
    await this.listen();
  }

  async dispose(): Promise<void> {
    if (this.server.listening) await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}
