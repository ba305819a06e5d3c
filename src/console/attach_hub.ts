/**
 * Interactive access to a VM's serial console for CRI Attach, several clients at once.
 *
 * The console's QEMU chardev is a unix socket QEMU listens on, with a log file (see
 * domain_xml.ts): QEMU appends every byte the guest writes to that file whether or not anybody is
 * connected, so the CRI log (src/console/log_pump.ts reads the file) stays complete while clients
 * attach and leave. QEMU's socket takes one client, so one hub per VM holds the connection while
 * at least one client is attached: guest output goes to every client's stdout, and input from any
 * client goes to the guest. The hub disconnects when the last client leaves.
 */
import net from 'node:net';
import { FailedPreconditionError, errorText } from '../errors.js';
import type { Readable, Writable } from 'node:stream';

export interface ConsoleClient {
  stdin?: Readable;
  stdout?: Writable;
  signal: AbortSignal;
}

export class ConsoleAttachHub {
  private socket: net.Socket | undefined;
  private connecting: Promise<net.Socket> | undefined;
  private readonly clients = new Set<ConsoleClient>();
  private readonly enders = new Map<ConsoleClient, () => void>();

  constructor(readonly socketPath: string) {}

  get attached(): number {
    return this.clients.size;
  }

  /** Resolves when the client leaves (its signal aborts) or the console goes away (VM stopped). */
  async attach(client: ConsoleClient): Promise<void> {
    const socket = await this.connect();
    if (client.signal.aborted) {
      this.maybeDisconnect();
      return;
    }
    this.clients.add(client);
    const onInput = (d: Buffer) => socket.write(d);
    client.stdin?.on('data', onInput);
    client.stdin?.on('error', () => {});
    await new Promise<void>((resolve) => {
      this.enders.set(client, resolve);
      client.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    client.stdin?.off('data', onInput);
    this.clients.delete(client);
    this.enders.delete(client);
    this.maybeDisconnect();
  }

  private connect(): Promise<net.Socket> {
    if (this.socket) return Promise.resolve(this.socket);
    if (this.connecting) return this.connecting;
    this.connecting = new Promise<net.Socket>((resolve, reject) => {
      const socket = net.connect(this.socketPath);
      socket.once('error', (err: NodeJS.ErrnoException) => {
        this.connecting = undefined;
        const why = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'the VM is not running' : errorText(err);
        reject(new FailedPreconditionError(`console ${this.socketPath}: ${why}`));
      });
      socket.once('connect', () => {
        socket.removeAllListeners('error');
        socket.on('error', () => {});
        socket.on('data', (d: Buffer) => {
          for (const c of this.clients) if (c.stdout && !c.stdout.destroyed) c.stdout.write(d);
        });
        socket.on('close', () => {
          if (this.socket === socket) this.socket = undefined;
          for (const end of this.enders.values()) end();
        });
        this.socket = socket;
        this.connecting = undefined;
        resolve(socket);
      });
    });
    return this.connecting;
  }

  private maybeDisconnect(): void {
    if (this.clients.size > 0 || !this.socket) return;
    this.socket.end();
    this.socket = undefined;
  }
}
