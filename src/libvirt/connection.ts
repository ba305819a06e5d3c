/**
 * The long-lived libvirt connection of a vmlet process. Keeps one LibvirtClient; when libvirtd
 * goes away (restart, crash) it reconnects with exponential backoff, registers for lifecycle
 * events again on every new connection, and tells listeners so they can resynchronise whatever
 * happened while it was disconnected (events are not replayed). `isAlive()` answers within a
 * short time limit, for the CRI Status call's RuntimeReady condition.
 */
import { errorText } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { LibvirtClient, LibvirtConnectionError, type LibvirtClientOptions, type LifecycleEvent, type LifecycleHandler } from './client.js';

export interface LibvirtConnectionOptions extends LibvirtClientOptions {
  /** First reconnect delay; doubles per failed attempt up to reconnectMaxMs. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Time limit of isAlive()'s ping. */
  aliveTimeoutMs?: number;
}

export type ConnectedListener = (client: LibvirtClient) => void;

interface Waiter {
  resolve: (client: LibvirtClient) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class LibvirtConnection {
  private client: LibvirtClient | undefined;
  private closed = false;
  private connecting = false;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly lifecycleHandlers = new Set<LifecycleHandler>();
  private readonly connectedListeners = new Set<ConnectedListener>();
  private readonly waiters = new Set<Waiter>();
  private readonly log: Logger;
  private readonly reconnectMinMs: number;
  private readonly reconnectMaxMs: number;
  private readonly aliveTimeoutMs: number;

  /** Starts connecting in the background; use whenConnected() to wait for the first connection. */
  constructor(private readonly options: LibvirtConnectionOptions = {}) {
    this.log = options.logger ?? silentLogger;
    this.reconnectMinMs = options.reconnectMinMs ?? 200;
    this.reconnectMaxMs = options.reconnectMaxMs ?? 10_000;
    this.aliveTimeoutMs = options.aliveTimeoutMs ?? 2_000;
    void this.connect();
  }

  /** The connected client, or LibvirtConnectionError (UNAVAILABLE) while there is none. */
  current(): LibvirtClient {
    if (this.client && !this.client.isClosed) return this.client;
    throw new LibvirtConnectionError(this.closed ? 'libvirt connection is closed' : 'not connected to libvirtd');
  }

  /** Resolves with the client once connected, or rejects with LibvirtConnectionError after timeoutMs. */
  whenConnected(timeoutMs: number): Promise<LibvirtClient> {
    if (this.client && !this.client.isClosed) return Promise.resolve(this.client);
    if (this.closed) return Promise.reject(new LibvirtConnectionError('libvirt connection is closed'));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(new LibvirtConnectionError(`not connected to libvirtd within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  /** True when libvirtd answers a ping within the alive time limit. Never throws. */
  async isAlive(timeoutMs = this.aliveTimeoutMs): Promise<boolean> {
    const client = this.client;
    if (!client || client.isClosed) return false;
    try {
      await client.ping(timeoutMs);
      return true;
    } catch {
      return false;
    }
  }

  /** Lifecycle events of all domains, across reconnects. Returns the function that removes the handler. */
  onLifecycle(handler: LifecycleHandler): () => void {
    this.lifecycleHandlers.add(handler);
    return () => this.lifecycleHandlers.delete(handler);
  }

  /** Called after every successful (re)connect, once events are registered: the moment to resynchronise. */
  onConnected(listener: ConnectedListener): () => void {
    this.connectedListeners.add(listener);
    return () => this.connectedListeners.delete(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(new LibvirtConnectionError('libvirt connection is closed'));
    }
    this.waiters.clear();
    const client = this.client;
    this.client = undefined;
    await client?.close();
  }

  private async connect(): Promise<void> {
    if (this.closed || this.connecting) return;
    this.connecting = true;
    let client: LibvirtClient | undefined;
    try {
      client = await LibvirtClient.connect(this.options);
      await client.onLifecycle((ev) => this.dispatchLifecycle(ev));
    } catch (err) {
      await client?.close();
      this.connecting = false;
      this.scheduleReconnect(err);
      return;
    }
    this.connecting = false;
    if (this.closed) {
      await client.close();
      return;
    }
    this.client = client;
    this.attempt = 0;
    const connected = client;
    connected.onClose((reason) => {
      if (this.client !== connected) return;
      this.client = undefined;
      if (this.closed) return;
      this.log.warn({ reason: reason.message }, 'lost connection to libvirtd; reconnecting');
      this.scheduleReconnect(reason);
    });
    this.log.info('connected to libvirtd');
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve(connected);
    }
    this.waiters.clear();
    for (const listener of this.connectedListeners) {
      try {
        listener(connected);
      } catch (err) {
        this.log.error({ err }, 'libvirt connected listener failed');
      }
    }
  }

  private scheduleReconnect(cause: unknown): void {
    if (this.closed || this.retryTimer) return;
    const delay = Math.min(this.reconnectMaxMs, this.reconnectMinMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    this.log.debug({ delayMs: delay, attempt: this.attempt, cause: errorText(cause) }, 'libvirtd not reachable; retrying');
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.connect();
    }, delay);
  }

  private dispatchLifecycle(ev: LifecycleEvent): void {
    for (const handler of this.lifecycleHandlers) {
      try {
        handler(ev);
      } catch (err) {
        this.log.error({ err, domain: ev.domain.name }, 'lifecycle handler failed');
      }
    }
  }
}
