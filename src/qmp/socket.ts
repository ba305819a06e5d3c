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
    const run = async (): Promise<unknown> => {
      if (this.failure) throw this.failure;
      const reply = await new Promise<Reply>((resolve, reject) => {
        this.waiting = { resolve, reject };
        this.socket.write(JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args }) + '\n');
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
