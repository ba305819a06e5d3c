/**
 * Errors of the libvirt access module. They are VmletErrors, so one that escapes to the CRI is
 * already mapped to a gRPC code. libvirt's own error number, domain and level are kept as
 * `virCode`, `virDomain` and `virLevel` (`code` is the gRPC code every VmletError carries);
 * callers decide by number, never by message text.
 */
import { Code, type CodeValue, DeadlineExceededError, UnavailableError, VmletError } from '../../errors.js';
import {
  VIR_ERR_AGENT_UNRESPONSIVE,
  VIR_ERR_ARGUMENT_UNSUPPORTED,
  VIR_ERR_CONFIG_UNSUPPORTED,
  VIR_ERR_DOM_EXIST,
  VIR_ERR_INVALID_ARG,
  VIR_ERR_NO_DOMAIN,
  VIR_ERR_NO_SUPPORT,
  VIR_ERR_OPERATION_INVALID,
  VIR_ERR_OPERATION_TIMEOUT,
  VIR_ERR_OPERATION_UNSUPPORTED,
  VIR_ERR_RESOURCE_BUSY,
  VIR_ERR_XML_DETAIL,
  VIR_ERR_XML_ERROR,
  VIR_ERR_XML_INVALID_SCHEMA,
} from './constants.js';
import type { RemoteError } from './remote_protocol.js';

/** gRPC code for a libvirt error number; anything not listed is INTERNAL. */
export function grpcCodeForLibvirtError(virCode: number): CodeValue {
  switch (virCode) {
    case VIR_ERR_NO_DOMAIN:
      return Code.NOT_FOUND;
    case VIR_ERR_DOM_EXIST:
      return Code.ALREADY_EXISTS;
    case VIR_ERR_OPERATION_INVALID:
      return Code.FAILED_PRECONDITION;
    case VIR_ERR_INVALID_ARG:
    case VIR_ERR_XML_ERROR:
    case VIR_ERR_XML_DETAIL:
    case VIR_ERR_XML_INVALID_SCHEMA:
    case VIR_ERR_CONFIG_UNSUPPORTED:
      return Code.INVALID_ARGUMENT;
    case VIR_ERR_NO_SUPPORT:
    case VIR_ERR_ARGUMENT_UNSUPPORTED:
    case VIR_ERR_OPERATION_UNSUPPORTED:
      return Code.UNIMPLEMENTED;
    case VIR_ERR_OPERATION_TIMEOUT:
      return Code.DEADLINE_EXCEEDED;
    case VIR_ERR_RESOURCE_BUSY:
    case VIR_ERR_AGENT_UNRESPONSIVE:
      return Code.UNAVAILABLE;
    default:
      return Code.INTERNAL;
  }
}

/** An error libvirtd reported for a call (an ERROR reply carrying remote_error). */
export class LibvirtError extends VmletError {
  /** virErrorNumber, e.g. VIR_ERR_NO_DOMAIN (42). */
  readonly virCode: number;
  /** virErrorDomain: the libvirt subsystem that raised it (e.g. 10 = QEMU). */
  readonly virDomain: number;
  /** virErrorLevel */
  readonly virLevel: number;
  /** Remote procedure number of the call that failed. */
  readonly procedure: number;
  readonly detail: Pick<RemoteError, 'str1' | 'str2' | 'str3' | 'int1' | 'int2'>;

  constructor(remote: RemoteError, procedure: number) {
    super(grpcCodeForLibvirtError(remote.code), remote.message ?? `libvirt error ${remote.code}`);
    this.virCode = remote.code;
    this.virDomain = remote.domain;
    this.virLevel = remote.level;
    this.procedure = procedure;
    this.detail = { str1: remote.str1, str2: remote.str2, str3: remote.str3, int1: remote.int1, int2: remote.int2 };
  }
}

/** The connection to libvirtd could not be made, or broke: every pending call gets this. */
export class LibvirtConnectionError extends UnavailableError {}

/** A call got no reply within its time limit. The connection stays usable; a late reply is dropped. */
export class LibvirtTimeoutError extends DeadlineExceededError {
  constructor(
    message: string,
    readonly procedure: number,
  ) {
    super(message);
  }
}

export function isLibvirtError(err: unknown, virCode?: number): err is LibvirtError {
  return err instanceof LibvirtError && (virCode === undefined || err.virCode === virCode);
}

/** True when libvirt said the domain does not exist (VIR_ERR_NO_DOMAIN), by error number. */
export function isNoDomain(err: unknown): boolean {
  return isLibvirtError(err, VIR_ERR_NO_DOMAIN);
}

/** True when the operation does not fit the domain's state, e.g. destroying a stopped domain. */
export function isOperationInvalid(err: unknown): boolean {
  return isLibvirtError(err, VIR_ERR_OPERATION_INVALID);
}
