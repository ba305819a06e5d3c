/**
 * Turns vmlet's async handlers into grpc-js service implementations: one debug log line per RPC
 * (method, duration, code), VmletError → its gRPC code, anything else → INTERNAL (logged with its
 * cause), and every RPC of the service definition that vmlet does not handle → UNIMPLEMENTED.
 */
import * as grpc from '@grpc/grpc-js';
import { VmletError, Code, errorText } from '../errors.js';
import type { Logger } from '../log.js';

export interface CallContext {
  /** Aborted when the client cancels the call or its deadline passes. */
  signal: AbortSignal;
  method: string;
  log: Logger;
}

// Requests and responses are plain objects shaped by proto-loader (keepCase, longs/enums as strings).
export type UnaryHandler = (request: any, ctx: CallContext) => Promise<object>;
export type HandlerMap = Record<string, UnaryHandler>;
/** Told about every finished call: method, gRPC code name, duration in seconds (metrics). */
export type RpcObserver = (method: string, code: string, seconds: number) => void;

export function statusName(code: number): string {
  return grpc.status[code] ?? String(code);
}

function toServiceError(err: unknown, method: string, log: Logger): Partial<grpc.StatusObject> {
  if (err instanceof VmletError) {
    if (err.code === Code.INTERNAL) log.error({ err, method }, 'internal error');
    else log.warn({ method, code: statusName(err.code), msg: err.message }, 'request failed');
    return { code: err.code as number, details: err.message };
  }
  log.error({ err, method }, 'unexpected error');
  return { code: grpc.status.INTERNAL, details: `internal error in ${method}: ${errorText(err)}` };
}

export function buildServiceImplementation(
  service: grpc.ServiceDefinition,
  handlers: HandlerMap,
  logger: Logger,
  observe?: RpcObserver,
): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(service)) {
    const handler = handlers[name];
    if (method.requestStream || method.responseStream || !handler) {
      impl[name] = unimplemented(name, method, logger);
      continue;
    }
    impl[name] = wrapUnary(name, handler, logger, observe);
  }
  for (const name of Object.keys(handlers)) {
    if (!(name in service)) throw new Error(`handler ${name} is not an RPC of the service`);
  }
  return impl;
}

function wrapUnary(method: string, handler: UnaryHandler, logger: Logger, observe?: RpcObserver): grpc.handleUnaryCall<any, any> {
  return (call, callback) => {
    const started = process.hrtime.bigint();
    const abort = new AbortController();
    let answered = false;
    // grpc-js emits 'cancelled' after every call's trailers too (its cleanup path): only a call
    // still unanswered is really cancelled; aborting the others would build an Error per call.
    call.on('cancelled', () => {
      if (!answered) abort.abort(new Error('call cancelled by the client'));
    });
    const ctx: CallContext = { signal: abort.signal, method, log: logger };
    const finish = (code: number) => {
      answered = true;
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      logger.debug({ method, durationMs: Math.round(durationMs * 1000) / 1000, code: statusName(code) }, 'rpc');
      try {
        observe?.(method, statusName(code), durationMs / 1000);
      } catch {
        /* metrics never fail a call */
      }
    };
    let promise: Promise<object>;
    try {
      promise = handler(call.request, ctx);
    } catch (err) {
      promise = Promise.reject(err);
    }
    // Nothing one call does may escape to the process: a failure while answering (logging an odd
    // error value, serialising a malformed response) still answers this call with INTERNAL.
    const fail = (err: unknown) => {
      let status: Partial<grpc.StatusObject>;
      try {
        status = toServiceError(err, method, logger);
      } catch {
        status = { code: grpc.status.INTERNAL, details: `internal error in ${method}` };
      }
      finish(status.code ?? grpc.status.UNKNOWN);
      try {
        callback(status as grpc.ServiceError, null);
      } catch (cbErr) {
        logger.error({ err: cbErr, method }, 'could not send the error status');
      }
    };
    promise.then(
      (response) => {
        try {
          callback(null, response);
          finish(grpc.status.OK);
        } catch (err) {
          fail(err);
        }
      },
      fail,
    );
  };
}

function unimplemented(name: string, method: grpc.MethodDefinition<any, any>, logger: Logger) {
  const details = `vmlet does not implement ${name}`;
  const status = { code: grpc.status.UNIMPLEMENTED, details };
  logger.trace({ method: name }, 'registered as UNIMPLEMENTED');
  if (method.requestStream && method.responseStream) {
    return (call: grpc.ServerDuplexStream<any, any>) => call.emit('error', status);
  }
  if (method.responseStream) {
    return (call: grpc.ServerWritableStream<any, any>) => call.emit('error', status);
  }
  if (method.requestStream) {
    return (_call: grpc.ServerReadableStream<any, any>, callback: grpc.sendUnaryData<any>) => callback(status, null);
  }
  return (_call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => callback(status, null);
}
