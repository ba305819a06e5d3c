/**
 * Errors that cross the CRI boundary. Every failure kind carries its gRPC status code so that
 * src/cri can map it without guessing; domain modules throw these and never import grpc.
 * The numeric values are the gRPC status codes (grpc/status.proto).
 */
export const Code = {
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;
export type CodeValue = (typeof Code)[keyof typeof Code];

export class VmletError extends Error {
  constructor(
    readonly code: CodeValue,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class InvalidArgumentError extends VmletError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(Code.INVALID_ARGUMENT, message, options);
  }
}
export class NotFoundError extends VmletError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(Code.NOT_FOUND, message, options);
  }
}
export class AlreadyExistsError extends VmletError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(Code.ALREADY_EXISTS, message, options);
  }
}
export class FailedPreconditionError extends VmletError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(Code.FAILED_PRECONDITION, message, options);
  }
}
/** A size or space limit: a configured maximum (like gRPC's own message size limit) or a full disk. */
export class ResourceExhaustedError extends VmletError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(Code.RESOURCE_EXHAUSTED, message, options);
  }
}
export class UnavailableError extends VmletError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(Code.UNAVAILABLE, message, options);
  }
}
export class DeadlineExceededError extends VmletError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(Code.DEADLINE_EXCEEDED, message, options);
  }
}
export class CancelledError extends VmletError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(Code.CANCELLED, message, options);
  }
}
export class UnimplementedError extends VmletError {
  constructor(message: string) {
    super(Code.UNIMPLEMENTED, message);
  }
}
export class InternalError extends VmletError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(Code.INTERNAL, message, options);
  }
}

/** Text of any thrown value, for messages and logs. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
