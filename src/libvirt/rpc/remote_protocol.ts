/**
 * The parts of libvirt's remote protocol (src/remote/remote_protocol.x, src/rpc/virnetprotocol.x,
 * src/rpc/virkeepaliveprotocol.x) that vmlet speaks: program and procedure numbers, limits, and
 * encoders/decoders for the structs shared by several calls. Procedure numbers are append-only in
 * libvirt, so these stay valid for every libvirtd that has them.
 */
import { TypedParamType } from './constants.js';
import { XdrError, type XdrReader, type XdrWriter } from './xdr.js';

export const REMOTE_PROGRAM = 0x20008086;
export const REMOTE_PROTOCOL_VERSION = 1;
/** src/remote/qemu_protocol.x: libvirt-qemu's calls (the guest agent command among them). */
export const QEMU_PROGRAM = 0x20008087;
export const QEMU_PROTOCOL_VERSION = 1;
export const QemuProc = { DOMAIN_AGENT_COMMAND: 3 } as const;
export const KEEPALIVE_PROGRAM = 0x6b656570;
export const KEEPALIVE_PROTOCOL_VERSION = 1;
export const KeepaliveProc = { PING: 1, PONG: 2 } as const;

/** remote_procedure values used here. */
export const Proc = {
  CONNECT_OPEN: 1,
  CONNECT_CLOSE: 2,
  CONNECT_GET_CAPABILITIES: 7,
  DOMAIN_GET_XML_DESC: 14,
  DOMAIN_GET_INFO: 16,
  DOMAIN_LOOKUP_BY_NAME: 23,
  DOMAIN_LOOKUP_BY_UUID: 24,
  DOMAIN_RESUME: 28,
  DOMAIN_GET_SCHEDULER_TYPE: 56,
  CONNECT_GET_HOSTNAME: 59,
  AUTH_LIST: 66,
  AUTH_POLKIT: 70,
  CONNECT_GET_LIB_VERSION: 157,
  DOMAIN_MEMORY_STATS: 159,
  DOMAIN_ATTACH_DEVICE_FLAGS: 160,
  DOMAIN_GET_BLOCK_INFO: 194,
  DOMAIN_CREATE_WITH_FLAGS: 196,
  DOMAIN_SET_VCPUS_FLAGS: 199,
  DOMAIN_SET_MEMORY_FLAGS: 204,
  DOMAIN_GET_STATE: 212,
  DOMAIN_SET_SCHEDULER_PARAMETERS_FLAGS: 219,
  DOMAIN_GET_SCHEDULER_PARAMETERS_FLAGS: 223,
  DOMAIN_UNDEFINE_FLAGS: 231,
  DOMAIN_DESTROY_FLAGS: 234,
  DOMAIN_SHUTDOWN_FLAGS: 258,
  CONNECT_LIST_ALL_DOMAINS: 273,
  CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY: 316,
  CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY: 317,
  DOMAIN_EVENT_CALLBACK_LIFECYCLE: 318,
  CONNECT_GET_DOMAIN_CAPABILITIES: 342,
  DOMAIN_DEFINE_XML_FLAGS: 350,
} as const;

/** remote_auth_type */
export const AuthType = { NONE: 0, SASL: 1, POLKIT: 2 } as const;

/** Limits from remote_protocol.x / virnetprotocol.x. */
export const REMOTE_STRING_MAX = 4_194_304;
export const REMOTE_DOMAIN_LIST_MAX = 16_384;
export const REMOTE_AUTH_TYPE_LIST_MAX = 20;
export const REMOTE_DOMAIN_MEMORY_STATS_MAX = 1024;
export const REMOTE_DOMAIN_SCHEDULER_PARAMETERS_MAX = 16;
export const VIR_UUID_BUFLEN = 16;
/** VIR_TYPED_PARAM_FIELD_LENGTH: a typed parameter's name must be shorter than this. */
export const TYPED_PARAM_FIELD_LENGTH = 80;

/** remote_nonnull_domain: how a domain is named on the wire. */
export interface DomainRef {
  name: string;
  /** Canonical lower-case form, e.g. 4dea22b3-1d52-d8f3-2516-782e98ab3fa0. */
  uuid: string;
  /** Hypervisor id while running, -1 otherwise. */
  id: number;
}

const UUID_RE = /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;

export function isUuid(value: string): boolean {
  return typeof value === 'string' && UUID_RE.test(value);
}

/** The 16 raw bytes of a UUID in string form; refuses anything that is not exactly a UUID. */
export function uuidToBytes(uuid: string): Buffer {
  if (!isUuid(uuid)) throw new XdrError(`not a UUID: ${JSON.stringify(uuid)}`);
  return Buffer.from(uuid.replace(/-/g, ''), 'hex');
}

export function uuidFromBytes(bytes: Buffer): string {
  if (bytes.length !== VIR_UUID_BUFLEN) throw new XdrError(`UUID must be 16 bytes, got ${bytes.length}`);
  const h = bytes.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function writeDomain(w: XdrWriter, dom: DomainRef): void {
  w.string(dom.name, REMOTE_STRING_MAX);
  w.opaqueFixed(uuidToBytes(dom.uuid), VIR_UUID_BUFLEN);
  w.int(dom.id);
}

export function readDomain(r: XdrReader): DomainRef {
  const name = r.string(REMOTE_STRING_MAX);
  const uuid = uuidFromBytes(r.opaqueFixed(VIR_UUID_BUFLEN));
  const id = r.int();
  return { name, uuid, id };
}

export function writeOptionalString(w: XdrWriter, value: string | null | undefined): void {
  w.optional(value, (x, v) => x.string(v, REMOTE_STRING_MAX));
}

export function readOptionalString(r: XdrReader): string | null {
  return r.optional((x) => x.string(REMOTE_STRING_MAX));
}

/** remote_error (= virNetMessageError): what an ERROR reply carries. */
export interface RemoteError {
  code: number;
  domain: number;
  message: string | null;
  level: number;
  dom: DomainRef | null;
  str1: string | null;
  str2: string | null;
  str3: string | null;
  int1: number;
  int2: number;
}

export function readRemoteError(r: XdrReader): RemoteError {
  const code = r.int();
  const domain = r.int();
  const message = readOptionalString(r);
  const level = r.int();
  const dom = r.optional(readDomain);
  const str1 = readOptionalString(r);
  const str2 = readOptionalString(r);
  const str3 = readOptionalString(r);
  const int1 = r.int();
  const int2 = r.int();
  // remote_network net: unused by libvirt, but present on the wire.
  r.optional((x) => {
    x.string(REMOTE_STRING_MAX);
    x.opaqueFixed(VIR_UUID_BUFLEN);
  });
  return { code, domain, message, level, dom, str1, str2, str3, int1, int2 };
}

/** Encoder of remote_error, used only by tests that play libvirtd's side. */
export function writeRemoteError(w: XdrWriter, e: RemoteError): void {
  w.int(e.code).int(e.domain);
  writeOptionalString(w, e.message);
  w.int(e.level);
  w.optional(e.dom, writeDomain);
  writeOptionalString(w, e.str1);
  writeOptionalString(w, e.str2);
  writeOptionalString(w, e.str3);
  w.int(e.int1).int(e.int2);
  w.bool(false);
}

/** virTypedParameter, typed so that 64-bit values stay bigint. */
export type TypedParam =
  | { field: string; type: 'int'; value: number }
  | { field: string; type: 'uint'; value: number }
  | { field: string; type: 'llong'; value: bigint }
  | { field: string; type: 'ullong'; value: bigint }
  | { field: string; type: 'double'; value: number }
  | { field: string; type: 'boolean'; value: boolean }
  | { field: string; type: 'string'; value: string };

function checkField(field: string): void {
  if (typeof field !== 'string' || field.length === 0 || Buffer.byteLength(field) >= TYPED_PARAM_FIELD_LENGTH) {
    throw new XdrError(`typed parameter name must be 1..${TYPED_PARAM_FIELD_LENGTH - 1} bytes: ${JSON.stringify(field)}`);
  }
}

export function writeTypedParam(w: XdrWriter, p: TypedParam): void {
  checkField(p.field);
  w.string(p.field, REMOTE_STRING_MAX);
  switch (p.type) {
    case 'int':
      w.int(TypedParamType.INT).int(p.value);
      break;
    case 'uint':
      w.int(TypedParamType.UINT).uint(p.value);
      break;
    case 'llong':
      w.int(TypedParamType.LLONG).hyper(p.value);
      break;
    case 'ullong':
      w.int(TypedParamType.ULLONG).uhyper(p.value);
      break;
    case 'double':
      w.int(TypedParamType.DOUBLE).double(p.value);
      break;
    case 'boolean':
      w.int(TypedParamType.BOOLEAN).bool(p.value);
      break;
    case 'string':
      w.int(TypedParamType.STRING).string(p.value, REMOTE_STRING_MAX);
      break;
    default: {
      const never: never = p;
      throw new XdrError(`unknown typed parameter ${JSON.stringify(never)}`);
    }
  }
}

export function readTypedParam(r: XdrReader): TypedParam {
  const field = r.string(REMOTE_STRING_MAX);
  const type = r.int();
  switch (type) {
    case TypedParamType.INT:
      return { field, type: 'int', value: r.int() };
    case TypedParamType.UINT:
      return { field, type: 'uint', value: r.uint() };
    case TypedParamType.LLONG:
      return { field, type: 'llong', value: r.hyper() };
    case TypedParamType.ULLONG:
      return { field, type: 'ullong', value: r.uhyper() };
    case TypedParamType.DOUBLE:
      return { field, type: 'double', value: r.double() };
    case TypedParamType.BOOLEAN:
      // libvirt sends booleans as an int that is 0 or 1.
      return { field, type: 'boolean', value: r.int() !== 0 };
    case TypedParamType.STRING:
      return { field, type: 'string', value: r.string(REMOTE_STRING_MAX) };
    default:
      throw new XdrError(`typed parameter ${JSON.stringify(field)} has unknown type ${type}`);
  }
}
