/**
 * The CRI endpoint: grpc-js services fed by our own unix socket listener. Each accepted connection
 * goes through Http2AuthorityRewriter (see there) and is injected into grpc-js.
 */
import * as grpc from '@grpc/grpc-js';
import type net from 'node:net';
import { unlink } from 'node:fs/promises';
import { listenUnix } from './listener.js';
import { Http2AuthorityRewriter } from './http2_authority.js';
import { buildServiceImplementation, type HandlerMap, type RpcObserver } from './rpc.js';
import { loadCriServices, type CriServices } from './proto.js';
import { acceptEncoded } from './encoded_list.js';
import type { Logger } from '../log.js';

export interface CriServerOptions {
  socketPath: string;
  runtimeHandlers: HandlerMap;
  imageHandlers: HandlerMap;
  logger: Logger;
  /** Told about every finished call (metrics). */
  onRpc?: RpcObserver;
}

/** gRPC message limit: large enough for verbose status documents, small enough to bound memory. */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

export class CriServer {
  private readonly grpcServer = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    // Channelz (per-connection and per-call bookkeeping and trace strings for a debug service
    // vmlet does not serve) costs CPU on every connection, and crictl opens one per command.
    'grpc.enable_channelz': 0,
  });
  private listener: net.Server | undefined;
  private readonly connections = new Set<net.Socket>();

  constructor(private readonly options: CriServerOptions) {
    const { runtimeService, imageService } = withEncodedResponses(loadCriServices());
    const { logger } = options;
    this.grpcServer.addService(runtimeService, buildServiceImplementation(runtimeService, options.runtimeHandlers, logger, options.onRpc));
    this.grpcServer.addService(imageService, buildServiceImplementation(imageService, options.imageHandlers, logger, options.onRpc));
  }

  async start(): Promise<void> {
    const injector = this.grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    this.listener = await listenUnix(this.options.socketPath, (socket) => {
      this.connections.add(socket);
      socket.once('close', () => this.connections.delete(socket));
      const conn = new Http2AuthorityRewriter(socket);
      conn.on('error', (err) => this.options.logger.debug({ err }, 'CRI connection error'));
      injector.injectConnection(conn);
    });
    this.options.logger.info({ socket: this.options.socketPath }, 'CRI server listening');
  }

  /** Stops accepting, lets in-flight calls finish for up to `graceMs`, then cuts the rest. */
  async stop(graceMs = 10_000): Promise<void> {
    const listener = this.listener;
    this.listener = undefined;
    // Stop accepting now; close()'s callback would wait for every open connection (kubelet keeps
    // one open for good), so the drain below is what ends them.
    listener?.close();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.grpcServer.forceShutdown();
        resolve();
      }, graceMs);
      this.grpcServer.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    for (const socket of this.connections) socket.destroy();
    if (listener) await unlink(this.options.socketPath).catch(() => {});
  }
}

/** Every method may answer with pre-encoded bytes (see encoded_list.ts). */
function withEncodedResponses(services: CriServices): { runtimeService: grpc.ServiceDefinition; imageService: grpc.ServiceDefinition } {
  const wrap = (def: grpc.ServiceDefinition): grpc.ServiceDefinition =>
    Object.fromEntries(Object.entries(def).map(([name, method]) => [name, acceptEncoded(method)]));
  return { runtimeService: wrap(services.runtimeService), imageService: wrap(services.imageService) };
}
