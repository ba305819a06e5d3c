/** A plain grpc-js client for the CRI RuntimeService over vmlet's unix socket, as kubelet dials it. */
import * as grpc from '@grpc/grpc-js';
import { loadCriServices } from '../../src/cri/proto.js';

type Callback = (err: grpc.ServiceError | null, response: unknown) => void;
type UnaryMethod = (request: object, options: grpc.CallOptions, callback: Callback) => void;

export class CriRuntimeClient {
  private readonly client: grpc.Client;
  private readonly service: grpc.ServiceDefinition;

  constructor(socketPath: string) {
    this.service = loadCriServices().runtimeService as unknown as grpc.ServiceDefinition;
    const Ctor = grpc.makeGenericClientConstructor(this.service, 'RuntimeService');
    this.client = new Ctor(`unix://${socketPath}`, grpc.credentials.createInsecure());
  }

  /** One unary call; rejects with the grpc ServiceError (its `code` is the gRPC status). */
  call<T = any>(method: string, request: object, timeoutMs = 120_000): Promise<T> {
    const fn = (this.client as unknown as Record<string, UnaryMethod | undefined>)[method];
    if (typeof fn !== 'function') return Promise.reject(new Error(`RuntimeService has no method ${method}`));
    return new Promise<T>((resolve, reject) => {
      fn.call(this.client, request, { deadline: new Date(Date.now() + timeoutMs) }, (err, response) =>
        err ? reject(err) : resolve(response as T),
      );
    });
  }

  /**
   * The same call, but the response is handed over as the raw protobuf bytes: the round trip
   * without this client's decoding, which is the client's cost, not the server's.
   */
  callRaw(method: string, request: object, timeoutMs = 120_000): Promise<Buffer> {
    const def = this.service[method];
    if (!def) return Promise.reject(new Error(`RuntimeService has no method ${method}`));
    return new Promise<Buffer>((resolve, reject) => {
      this.client.makeUnaryRequest<object, Buffer>(
        def.path,
        def.requestSerialize as (req: object) => Buffer,
        (bytes: Buffer) => bytes,
        request,
        { deadline: new Date(Date.now() + timeoutMs) },
        (err, response) => (err ? reject(err) : resolve(response!)),
      );
    });
  }

  /** Encodes / decodes a response of `method` the way grpc-js does on each side. */
  codec(method: string): { encode(response: object): Buffer; decode(bytes: Buffer): unknown } {
    const def = this.service[method];
    if (!def) throw new Error(`RuntimeService has no method ${method}`);
    return { encode: (r) => def.responseSerialize(r), decode: (b) => def.responseDeserialize(b) };
  }

  close(): void {
    this.client.close();
  }
}
