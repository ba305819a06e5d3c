/**
 * One RPC connection to libvirtd over its unix socket: sends calls, matches replies to calls by
 * serial (any number of calls may be in flight), enforces a time limit per call, hands
 * asynchronous messages (events) to a listener, answers keepalive pings, and fails every pending
 * call with LibvirtConnectionError when the socket goes away. Knows nothing about procedures.
 */
import { createConnection, type Socket } from 'node:net';
import { errorText } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { LibvirtConnectionError, LibvirtError, LibvirtTimeoutError } from './errors.js';
import { decodePacket, encodePacket, MessageStatus, MessageType, PacketFramer, type PacketHeader } from './packet.js';
import { KEEPALIVE_PROGRAM, KEEPALIVE_PROTOCOL_VERSION, KeepaliveProc, readRemoteError } from './remote_protocol.js';
import { XdrReader } from './xdr.js';

export interface TransportOptions {
  socketPath: string;
  /** Time limit for the socket connect itself. */
  connectTimeoutMs: number;
  logger?: Logger;
}

export type MessageListener = (header: PacketHeader, payload: Buffer) => void;
export type CloseListener = (reason: LibvirtConnectionError) => void;

interface PendingCall {
  procedure: number;
  resolve: (payload: Buffer) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

const SERIAL_LIMIT = 0x1_0000_0000;

export class RpcTransport {
  private readonly pending = new Map<number, PendingCall>();
  private readonly framer = new PacketFramer();
  private readonly messageListeners = new Set<MessageListener>();
  private readonly closeListeners = new Set<CloseListener>();
  private nextSerial = 1;
  private closedWith: LibvirtConnectionError | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly log: Logger,
  ) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.shutdown(new LibvirtConnectionError(`libvirtd socket error: ${err.message}`, { cause: err })));
    socket.on('close', () => this.shutdown(new LibvirtConnectionError('connection to libvirtd closed')));
  }

  static connect(options: TransportOptions): Promise<RpcTransport> {
    const log = options.logger ?? silentLogger;
    return new Promise((resolve, reject) => {
      const socket = createConnection({ path: options.socketPath });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new LibvirtConnectionError(`connecting to ${options.socketPath} timed out after ${options.connectTimeoutMs} ms`));
      }, options.connectTimeoutMs);
      const onError = (err: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(new LibvirtConnectionError(`cannot connect to libvirtd at ${options.socketPath}: ${err.message}`, { cause: err }));
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        resolve(new RpcTransport(socket, log));
      });
    });
  }

  get isClosed(): boolean {
    return this.closedWith !== undefined;
  }

  get pendingCalls(): number {
    return this.pending.size;
  }

  /**
   * Sends one call and resolves with the reply payload (the procedure's `_ret` struct), or rejects
   * with LibvirtError (libvirtd reported an error), LibvirtTimeoutError or LibvirtConnectionError.
   */
  call(program: number, version: number, procedure: number, args: Buffer, timeoutMs: number): Promise<Buffer> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const serial = this.allocateSerial();
    const packet = encodePacket({ program, version, procedure, type: MessageType.CALL, serial, status: MessageStatus.OK }, args);
    return new Promise<Buffer>((resolve, reject) => {
      const entry: PendingCall = { procedure, resolve, reject, timer: undefined };
      if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        entry.timer = setTimeout(() => {
          if (this.pending.get(serial) !== entry) return;
          this.pending.delete(serial);
          reject(new LibvirtTimeoutError(`libvirt procedure ${procedure} got no reply within ${timeoutMs} ms`, procedure));
        }, timeoutMs);
      }
      this.pending.set(serial, entry);
      this.socket.write(packet);
    });
  }

  onMessage(listener: MessageListener): () => void {
    this.messageListeners.add(listener);
    return () => this.messageListeners.delete(listener);
  }

  /** Called once when the connection ends, whoever ended it. */
  onClose(listener: CloseListener): () => void {
    if (this.closedWith) {
      const reason = this.closedWith;
      queueMicrotask(() => listener(reason));
      return () => {};
    }
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Ends the connection; pending calls fail with LibvirtConnectionError. */
  close(reason = 'connection to libvirtd closed by client'): void {
    this.shutdown(new LibvirtConnectionError(reason));
  }

  private allocateSerial(): number {
    // Serials wrap at 2^32; skip any still waiting for a reply.
    for (;;) {
      const serial = this.nextSerial;
      this.nextSerial = (this.nextSerial + 1) % SERIAL_LIMIT;
      if (!this.pending.has(serial)) return serial;
    }
  }

  private onData(chunk: Buffer): void {
    let packets: Buffer[];
    try {
      packets = this.framer.push(chunk);
    } catch (err) {
      this.shutdown(new LibvirtConnectionError(`protocol error from libvirtd: ${errorText(err)}`, { cause: err }));
      return;
    }
    for (const raw of packets) {
      if (this.closedWith) return;
      try {
        this.dispatch(raw);
      } catch (err) {
        this.shutdown(new LibvirtConnectionError(`protocol error from libvirtd: ${errorText(err)}`, { cause: err }));
        return;
      }
    }
  }

  private dispatch(raw: Buffer): void {
    const { header, payload } = decodePacket(raw);
    switch (header.type) {
      case MessageType.REPLY:
        this.onReply(header, payload);
        return;
      case MessageType.MESSAGE:
        if (header.program === KEEPALIVE_PROGRAM) {
          this.onKeepalive(header);
          return;
        }
        for (const listener of this.messageListeners) {
          try {
            listener(header, payload);
          } catch (err) {
            // One faulty listener must not take the connection down.
            this.log.error({ err, procedure: header.procedure }, 'libvirt message listener failed');
          }
        }
        return;
      default:
        this.log.warn({ type: header.type, procedure: header.procedure }, 'ignoring libvirt packet of unexpected type');
    }
  }

  private onReply(header: PacketHeader, payload: Buffer): void {
    const entry = this.pending.get(header.serial);
    if (!entry) {
      // The call timed out earlier; its late reply has nobody waiting.
      this.log.debug({ serial: header.serial, procedure: header.procedure }, 'dropping reply to a call nobody waits for');
      return;
    }
    this.pending.delete(header.serial);
    if (entry.timer) clearTimeout(entry.timer);
    if (header.status === MessageStatus.OK) {
      entry.resolve(payload);
    } else if (header.status === MessageStatus.ERROR) {
      let remote;
      try {
        remote = readRemoteError(new XdrReader(payload));
      } catch (err) {
        const broken = new LibvirtConnectionError(`undecodable error reply from libvirtd: ${errorText(err)}`, { cause: err });
        entry.reject(broken);
        throw broken;
      }
      entry.reject(new LibvirtError(remote, entry.procedure));
    } else {
      entry.reject(new LibvirtConnectionError(`libvirt reply with unexpected status ${header.status}`));
    }
  }

  private onKeepalive(header: PacketHeader): void {
    if (header.procedure !== KeepaliveProc.PING || this.closedWith) return;
    this.socket.write(
      encodePacket({
        program: KEEPALIVE_PROGRAM,
        version: KEEPALIVE_PROTOCOL_VERSION,
        procedure: KeepaliveProc.PONG,
        type: MessageType.MESSAGE,
        serial: 0,
        status: MessageStatus.OK,
      }),
    );
  }

  private shutdown(reason: LibvirtConnectionError): void {
    if (this.closedWith) return;
    this.closedWith = reason;
    this.socket.destroy();
    const calls = [...this.pending.values()];
    this.pending.clear();
    for (const call of calls) {
      if (call.timer) clearTimeout(call.timer);
      call.reject(reason);
    }
    const listeners = [...this.closeListeners];
    this.closeListeners.clear();
    this.messageListeners.clear();
    for (const listener of listeners) {
      try {
        listener(reason);
      } catch (err) {
        this.log.error({ err }, 'libvirt close listener failed');
      }
    }
  }
}
