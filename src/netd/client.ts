/**
 * serve's side of netd: forks `vmlet netd`, sends requests with ids and time limits, and restarts
 * netd when it dies. Calls in flight when netd dies fail with UNAVAILABLE; the new netd reloads
 * its state from disk, so nothing the old one built is forgotten.
 */
import { fork, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { TCP_SOCKET_METHOD } from './port_socket.js';
import { fileURLToPath } from 'node:url';
import { VmletError, UnavailableError, DeadlineExceededError, type CodeValue } from '../errors.js';
import type { Logger } from '../log.js';
import type { NetdMethods, NetdMethod, NetdResponse, NetdReady, NetdEvent } from './protocol.js';

const MAIN = fileURLToPath(new URL('../main.js', import.meta.url)).replace(/\.js$/, mainExtension());

function mainExtension(): string {
  // Under tsx the sources are .ts; after the build they are .js.
  return import.meta.url.endsWith('.ts') ? '.ts' : '.js';
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export interface NetdClientOptions {
  /** Arguments after `vmlet netd`. */
  args: string[];
  logger: Logger;
  /** Time to wait for a new netd to report ready. */
  startTimeoutMs?: number;
}

export class NetdClient {
  private child: ChildProcess | undefined;
  private readyPromise: Promise<void> | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private stopping = false;
  private restarts = 0;
  /** netd restarts since start (for metrics). */
  restartsTotal = 0;
  /** Where netd's unsolicited events go (set by whoever acts on them). */
  onEvent: (event: NetdEvent) => void = () => {};

  constructor(private readonly options: NetdClientOptions) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): Promise<void> {
    this.stopping = false;
    if (!this.readyPromise) this.readyPromise = this.spawn();
    return this.readyPromise;
  }

  private spawn(): Promise<void> {
    const { logger } = this.options;
    const child = fork(MAIN, ['netd', ...this.options.args], {
      execArgv: process.execArgv,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json',
    });
    this.child = child;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new UnavailableError('netd did not become ready in time'));
        child.kill('SIGKILL');
      }, this.options.startTimeoutMs ?? 60_000);
      child.on('message', (msg: NetdResponse | NetdReady | NetdEvent, handle?: unknown) => {
        if ('event' in msg) {
          this.onEvent(msg);
          return;
        }
        if ('ready' in msg) {
          clearTimeout(timer);
          logger.info({ pid: msg.pid }, 'netd ready');
          resolve();
          return;
        }
        this.onResponse(msg, handle);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new UnavailableError(`netd exited during start (code ${code}, signal ${signal})`));
        this.onExit(child, code, signal);
      });
    });
  }

  private onResponse(msg: NetdResponse, handle?: unknown): void {
    const p = this.pending.get(msg.id);
    if (!p) {
      (handle as net.Socket | undefined)?.destroy?.();
      return;
    }
    this.pending.delete(msg.id);
    clearTimeout(p.timer);
    if (msg.error) p.reject(new VmletError(msg.error.code as CodeValue, msg.error.message));
    else p.resolve(handle ?? msg.result);
  }

  /** A TCP socket inside the pod netns at `netnsPath`, not yet connected (src/netd/port_socket.ts). */
  async tcpSocketInNetns(netnsPath: string, timeoutMs: number): Promise<net.Socket> {
    const socket = (await this.call(TCP_SOCKET_METHOD as NetdMethod, { netnsPath } as never, timeoutMs)) as unknown;
    if (!(socket instanceof net.Socket)) throw new UnavailableError('netd answered without a socket');
    return socket;
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child) return;
    this.child = undefined;
    this.readyPromise = undefined;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new UnavailableError(`netd exited (code ${code}, signal ${signal}) while handling the call; retry`));
      this.pending.delete(id);
    }
    if (this.stopping) return;
    this.restarts++;
    this.restartsTotal++;
    const delay = Math.min(5000, 100 * 2 ** Math.min(this.restarts, 6));
    this.options.logger.error({ code, signal, restartInMs: delay }, 'netd died; restarting');
    setTimeout(() => {
      if (!this.stopping && !this.readyPromise) {
        this.readyPromise = this.spawn();
        this.readyPromise.then(
          () => (this.restarts = 0),
          (err) => this.options.logger.error({ err }, 'netd restart failed'),
        );
      }
    }, delay).unref();
  }

  async call<M extends NetdMethod>(method: M, params: Parameters<NetdMethods[M]>[0], timeoutMs: number): Promise<Awaited<ReturnType<NetdMethods[M]>>> {
    if (!this.readyPromise) {
      if (this.stopping) throw new UnavailableError('netd is stopped');
      this.readyPromise = this.spawn();
    }
    await this.readyPromise;
    const child = this.child;
    if (!child || !child.connected) throw new UnavailableError('netd is not running; retry');
    const id = this.nextId++;
    return new Promise<Awaited<ReturnType<NetdMethods[M]>>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new DeadlineExceededError(`netd ${method} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      child.send({ id, method, params }, (err) => {
        if (err) {
          clearTimeout(timer);
          this.pending.delete(id);
          reject(new UnavailableError(`cannot reach netd: ${err.message}`));
        }
      });
    });
  }

  /** Asks netd to exit and waits for it; SIGKILL after the grace time. */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
}
