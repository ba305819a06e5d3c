/**
 * A QMP client on a QEMU monitor socket of vmlet's own (a warm domain's second monitor, `-qmp
 * unix:…`; libvirt keeps the first). Why not libvirt's qemu-monitor-command: every call there takes
 * the domain's job lock and costs 6-17 ms here; straight to QEMU the same commands take 2-5 ms, and
 * a warm VM needs five or more of them on the pod's critical path.
 *
 * QMP is one JSON object per line: a greeting, then `qmp_capabilities`, then commands, each
 * answered in order by `{"return": …}` or `{"error": …}`; asynchronous `{"event": …}` lines come
 * in between and are ignored here. Commands are sent one at a time.
 */
import { connect, type Socket } from 'node:net';
import { netnsNative } from '../native/netns.js';
import { QmpError } from './errors.js';

/** Longest unix socket path the kernel takes (sun_path is 108 bytes with the NUL). */
export const UNIX_PATH_MAX = 107;

type Reply = { return?: unknown; error?: { class?: string; desc?: string } };

/** Splits QMP's line stream into parsed messages, keeping a partial last line. Pure apart from its buffer. */
export class QmpLineReader {
  private buffer = '';

  push(chunk: string): Record<string, unknown>[] {
    this.buffer += chunk;
    const out: Record<string, unknown>[] = [];
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line === '') continue;
      const parsed: unknown = JSON.parse(line);
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`QMP sent a non-object line: ${line.slice(0, 200)}`);
      out.push(parsed as Record<string, unknown>);
    }
    return out;
  }
}

/** The QMP calls vmlet makes on a socket: what a fake stands in for in tests. */
export interface QmpSession {
  execute(command: string, args?: Record<string, unknown>): Promise<unknown>;
  /**
   * `execute` with `fd` passed along (SCM_RIGHTS) for commands that take one (`add-fd`, `getfd`).
   * QEMU gets its own copy; the caller still owns and closes `fd`.
   */
  executeWithFd(command: string, args: Record<string, unknown>, fd: number): Promise<unknown>;
  close(): void;
}

/** Opens a QMP session on a monitor socket (QmpSocket.connect; a recording fake in tests). */
export type QmpConnector = (path: string) => Promise<QmpSession>;

export const connectQmp: QmpConnector = (path) => QmpSocket.connect(path);

export class QmpSocket implements QmpSession {
  private readonly reader = new QmpLineReader();
  private waiting: { resolve(reply: Reply): void; reject(err: Error): void } | undefined;
  private greeted: (() => void) | undefined;
  private failure: Error | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('QEMU closed its QMP socket')));
  }

  /** Connects, waits for the greeting and leaves capabilities negotiation mode. */
  static async connect(path: string, timeoutMs = 10_000): Promise<QmpSocket> {
    if (Buffer.byteLength(path) > UNIX_PATH_MAX) throw new Error(`QMP socket path is longer than ${UNIX_PATH_MAX} bytes: ${path}`);
    const socket = connect(path);
    const qmp = new QmpSocket(socket);
    const timer = setTimeout(() => socket.destroy(new Error(`no QMP greeting on ${path} within ${timeoutMs} ms`)), timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        qmp.greeted = resolve;
        socket.once('error', reject);
        socket.once('close', () => reject(new Error(`QMP socket ${path} closed before its greeting`)));
      });
      await qmp.execute('qmp_capabilities');
      return qmp;
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends one command; resolves with its `return`, rejects with QmpError on `error`. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    return this.send(command, args, undefined);
  }

  executeWithFd(command: string, args: Record<string, unknown>, fd: number): Promise<unknown> {
    if (!Number.isInteger(fd) || fd < 0) return Promise.reject(new Error(`not an fd: ${fd}`));
    return this.send(command, args, fd);
  }

  private send(command: string, args: Record<string, unknown> | undefined, fd: number | undefined): Promise<unknown> {
    const run = async (): Promise<unknown> => {
      if (this.failure) throw this.failure;
      const line = JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args }) + '\n';
      const reply = await new Promise<Reply>((resolve, reject) => {
        this.waiting = { resolve, reject };
        if (fd === undefined) return void this.socket.write(line);
        try {
          this.writeWithFd(line, fd);
        } catch (err) {
          this.waiting = undefined;
          reject(err as Error);
        }
      });
      if (reply.error) throw new QmpError(command, reply.error.class ?? 'GenericError', reply.error.desc ?? 'no description');
      return reply.return;
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  close(): void {
    this.socket.destroy();
  }

  /**
   * The line goes out through the socket's own fd with `fd` attached to its first byte (QEMU takes
   * the fds that come with a command's bytes). Nothing else of ours is being written meanwhile:
   * commands go one at a time and the previous one was answered, so its bytes left long ago.
   * Node exposes no fd for a unix socket but its handle's (`_handle.fd`, what child_process uses).
   */
  private writeWithFd(line: string, fd: number): void {
    const socketFd = (this.socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
    if (typeof socketFd !== 'number' || socketFd < 0) throw new Error('the QMP socket has no fd to send an fd on');
    const sent = netnsNative().sendFd(socketFd, line, fd);
    const rest = Buffer.from(line).subarray(sent);
    if (rest.length > 0) this.socket.write(rest);
  }

  private onData(chunk: string): void {
    let messages: Record<string, unknown>[];
    try {
      messages = this.reader.push(chunk);
    } catch (err) {
      this.socket.destroy(err as Error);
      return;
    }
    for (const m of messages) {
      if ('QMP' in m) {
        this.greeted?.();
        this.greeted = undefined;
      } else if ('return' in m || 'error' in m) {
        const waiting = this.waiting;
        this.waiting = undefined;
        waiting?.resolve(m as Reply);
      }
      // {"event": …}: not needed here.
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.reject(err);
  }
}
