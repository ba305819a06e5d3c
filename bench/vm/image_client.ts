/** A plain grpc-js client for the CRI ImageService on vmlet's unix socket (bench/lib has the RuntimeService one). */
import * as grpc from '@grpc/grpc-js';
import { loadCriServices } from '../../src/cri/proto.js';

type Callback = (err: grpc.ServiceError | null, response: unknown) => void;
type UnaryMethod = (request: object, options: grpc.CallOptions, callback: Callback) => void;

export class CriImageClient {
  private readonly client: grpc.Client;

  constructor(socketPath: string) {
    const service = loadCriServices().imageService as unknown as grpc.ServiceDefinition;
    const Ctor = grpc.makeGenericClientConstructor(service, 'ImageService');
    this.client = new Ctor(`unix://${socketPath}`, grpc.credentials.createInsecure());
  }

  call<T = any>(method: string, request: object, timeoutMs = 300_000): Promise<T> {
    const fn = (this.client as unknown as Record<string, UnaryMethod | undefined>)[method];
    if (typeof fn !== 'function') return Promise.reject(new Error(`ImageService has no method ${method}`));
    return new Promise<T>((resolve, reject) => {
      fn.call(this.client, request, { deadline: new Date(Date.now() + timeoutMs) }, (err, response) => (err ? reject(err) : resolve(response as T)));
    });
  }

  close(): void {
    this.client.close();
  }
}
