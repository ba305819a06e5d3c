/**
 * A gRPC client to the delegate container runtime (containerd's CRI plugin), speaking the same
 * runtime.v1 proto vmlet serves. Requests go out re-encoded from the decoded objects vmlet's
 * server received; answers come back as raw protobuf bytes so a delegated call is answered with
 * exactly what the delegate said (see router.ts), and merged list answers are byte concatenations.
 */
import * as grpc from '@grpc/grpc-js';
import { loadCriServices } from '../cri/proto.js';
import { VmletError, type CodeValue } from '../errors.js';

export type CriServiceName = 'runtime' | 'image';

/** A failure answered by the delegate (or by the channel to it), with its gRPC code unchanged. */
export class DelegateError extends VmletError {
  constructor(code: number, message: string) {
    super(code as CodeValue, message);
  }
}

/** gRPC message limit, the same as vmlet's own server (src/cri/server.ts). */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

export interface DelegateCallOptions {
  /** Cancels the delegated call (the caller's own call was cancelled or its deadline passed). */
  signal?: AbortSignal;
  /** Upper bound for this call; none when absent (the caller's signal bounds it). */
  timeoutMs?: number;
}

/** The narrow interface the router uses; tests may give it another implementation. */
export interface Delegate {
  readonly endpoint: string;
  /** Calls `method` and answers the response's protobuf bytes; failures are DelegateErrors. */
  call(service: CriServiceName, method: string, request: object, options?: DelegateCallOptions): Promise<Buffer>;
  close(): void;
}

/** `unix:///run/containerd/containerd.sock` or `unix:/path`; a bare absolute path is taken as a unix socket. */
export function grpcTarget(endpoint: string): string {
  if (endpoint.startsWith('/')) return `unix://${endpoint}`;
  return endpoint;
}

export class GrpcDelegate implements Delegate {
  private readonly client: grpc.Client;
  private readonly services = loadCriServices();

  constructor(readonly endpoint: string) {
    this.client = new grpc.Client(grpcTarget(endpoint), grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      // A restarted containerd is used again within seconds, not after grpc's 2-minute backoff cap.
      'grpc.initial_reconnect_backoff_ms': 500,
      'grpc.max_reconnect_backoff_ms': 5000,
    });
  }

  call(service: CriServiceName, method: string, request: object, options: DelegateCallOptions = {}): Promise<Buffer> {
    const def = (service === 'runtime' ? this.services.runtimeService : this.services.imageService) as unknown as grpc.ServiceDefinition;
    const m = def[method];
    if (!m || m.requestStream || m.responseStream) {
      return Promise.reject(new DelegateError(grpc.status.UNIMPLEMENTED, `${method} is not a unary CRI ${service} call`));
    }
    if (options.signal?.aborted) return Promise.reject(new DelegateError(grpc.status.CANCELLED, `${method} cancelled before it reached the container runtime`));
    return new Promise((resolve, reject) => {
      const callOptions: grpc.CallOptions = {};
      if (options.timeoutMs !== undefined) callOptions.deadline = new Date(Date.now() + options.timeoutMs);
      const call = this.client.makeUnaryRequest<object, Buffer>(
        m.path,
        (value) => m.requestSerialize(value),
        (bytes) => bytes,
        request,
        new grpc.Metadata(),
        callOptions,
        (err, response) => {
          options.signal?.removeEventListener('abort', onAbort);
          if (err) reject(new DelegateError(err.code, `container runtime ${this.endpoint}: ${err.details || err.message}`));
          else resolve(response ?? Buffer.alloc(0));
        },
      );
      const onAbort = () => call.cancel();
      options.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  close(): void {
    this.client.close();
  }
}
