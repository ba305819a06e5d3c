/**
 * Virtlet-compatible pod annotations → typed VmAnnotations.
 *
 * Names and meanings follow Virtlet (pkg/metadata/types/annotations.go and its docs); defaults
 * are Virtlet's (1 vCPU, virtio-scsi disk, NoCloud seed). Unlike Virtlet, booleans must be exactly
 * "true" or "false" and every malformed value is an InvalidArgumentError naming the annotation, so
 * a typo is reported at CreateContainer instead of silently ignored.
 */
import { InvalidArgumentError } from '../errors.js';
import { parseYamlBounded } from '../documents/bounded.js';

export const ANNOTATION = {
  vcpuCount: 'VirtletVCPUCount',
  diskDriver: 'VirtletDiskDriver',
  rootVolumeSize: 'VirtletRootVolumeSize',
  cpuModel: 'VirtletCPUModel',
  systemUuid: 'VirtletSystemUUID',
  sshKeys: 'VirtletSSHKeys',
  userData: 'VirtletCloudInitUserData',
  userDataOverwrite: 'VirtletCloudInitUserDataOverwrite',
  userDataScript: 'VirtletCloudInitUserDataScript',
  metaData: 'VirtletCloudInitMetaData',
  imageType: 'VirtletCloudInitImageType',
  forceDhcpNetworkConfig: 'VirtletForceDHCPNetworkConfig',
} as const;

/** Virtlet's upper bound for VirtletVCPUCount. */
export const MAX_VCPU_COUNT = 255;
/** Kubernetes caps all annotations of an object at 256 KiB together; one cannot exceed that. */
const MAX_ANNOTATION_BYTES = 256 * 1024;
const MAX_SSH_KEYS = 100;
/**
 * The largest root volume QEMU opens as qcow2 with vmlet's 64 KiB clusters: its L1 table may hold
 * at most 32 MiB (QCOW_MAX_L1_SIZE) = 4 Mi entries, each mapping one L2 table of 8192 clusters
 * (512 MiB), so 2 PiB. `qemu-img create -f qcow2` accepts 2 PiB and refuses 2 PiB + 512 MiB; a
 * larger overlay came back from QEMU as INTERNAL "Active L1 table too large".
 */
export const MAX_ROOT_VOLUME_BYTES = 2 ** 51;

/** A YAML mapping as plain JS data. */
export type YamlMapping = { [key: string]: unknown };

export interface VmAnnotations {
  vcpuCount: number;
  diskDriver: 'virtio' | 'scsi';
  /** Requested root volume size in bytes; absent = the image's own size. */
  rootVolumeSizeBytes?: number;
  cpuModel?: 'host-model';
  /** Lower-case UUID for the domain / guest SMBIOS. */
  systemUuid?: string;
  sshKeys: string[];
  /** Merged over (or, with userDataOverwrite, key-replacing) the generated user-data. */
  userData?: YamlMapping;
  userDataOverwrite: boolean;
  /** Replaces the whole user-data document when set. */
  userDataScript?: string;
  /** Merged over the generated meta-data. */
  metaData?: YamlMapping;
  cloudInitImageType: 'nocloud' | 'configdrive';
  forceDhcpNetworkConfig: boolean;
  /** Virtlet annotations present on the pod that vmlet does not implement (for a warning). */
  unsupported: string[];
}

const KNOWN = new Set<string>(Object.values(ANNOTATION));

/** Parses the pod annotations; throws InvalidArgumentError naming the first malformed one. */
export function parseVmAnnotations(annotations: Readonly<Record<string, string>>): VmAnnotations {
  const get = (name: string): string | undefined => {
    if (!Object.prototype.hasOwnProperty.call(annotations, name)) return undefined;
    const value = annotations[name];
    if (typeof value !== 'string') throw bad(name, 'must be a string');
    if (Buffer.byteLength(value, 'utf8') > MAX_ANNOTATION_BYTES) throw bad(name, 'is too long');
    if (value.includes('\u0000')) throw bad(name, 'contains a NUL character');
    return value;
  };

  const result: VmAnnotations = {
    vcpuCount: 1,
    diskDriver: 'scsi',
    sshKeys: [],
    userDataOverwrite: false,
    cloudInitImageType: 'nocloud',
    forceDhcpNetworkConfig: false,
    unsupported: Object.keys(annotations)
      .filter((k) => k.startsWith('Virtlet') && !KNOWN.has(k))
      .sort(),
  };

  const vcpu = get(ANNOTATION.vcpuCount);
  if (vcpu !== undefined) {
    const n = /^[1-9][0-9]{0,5}$/.test(vcpu.trim()) ? Number(vcpu.trim()) : NaN;
    if (!(n >= 1 && n <= MAX_VCPU_COUNT)) {
      throw bad(ANNOTATION.vcpuCount, `must be an integer from 1 to ${MAX_VCPU_COUNT}`, vcpu);
    }
    result.vcpuCount = n;
  }

  const driver = get(ANNOTATION.diskDriver);
  if (driver !== undefined) {
    if (driver !== 'virtio' && driver !== 'scsi') throw bad(ANNOTATION.diskDriver, 'must be "virtio" or "scsi"', driver);
    result.diskDriver = driver;
  }

  const size = get(ANNOTATION.rootVolumeSize);
  if (size !== undefined) {
    const bytes = parseQuantityBytes(size);
    if (bytes === undefined || bytes <= 0) {
      throw bad(ANNOTATION.rootVolumeSize, 'must be a positive whole number of bytes as a Kubernetes quantity (e.g. 4Gi)', size);
    }
    if (bytes > MAX_ROOT_VOLUME_BYTES) {
      throw bad(ANNOTATION.rootVolumeSize, `is larger than qcow2 allows with 64 KiB clusters (${MAX_ROOT_VOLUME_BYTES} bytes = 2Pi)`, size);
    }
    result.rootVolumeSizeBytes = bytes;
  }

  const cpuModel = get(ANNOTATION.cpuModel);
  if (cpuModel !== undefined && cpuModel !== '') {
    if (cpuModel !== 'host-model') throw bad(ANNOTATION.cpuModel, 'must be empty or "host-model"', cpuModel);
    result.cpuModel = cpuModel;
  }

  const uuid = get(ANNOTATION.systemUuid);
  if (uuid !== undefined) {
    const u = uuid.trim().toLowerCase();
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(u)) {
      throw bad(ANNOTATION.systemUuid, 'must be a UUID like 53008994-44c0-4017-ad44-9c49758083da', uuid);
    }
    result.systemUuid = u;
  }

  const keys = get(ANNOTATION.sshKeys);
  if (keys !== undefined) result.sshKeys = parseSshKeys(keys);

  const overwrite = get(ANNOTATION.userDataOverwrite);
  if (overwrite !== undefined) result.userDataOverwrite = parseBool(ANNOTATION.userDataOverwrite, overwrite);

  const userData = get(ANNOTATION.userData);
  if (userData !== undefined) {
    const mapping = parseYamlMapping(ANNOTATION.userData, userData);
    if (mapping !== undefined) result.userData = mapping;
  }

  const script = get(ANNOTATION.userDataScript);
  if (script !== undefined && script !== '') result.userDataScript = script;

  const metaData = get(ANNOTATION.metaData);
  if (metaData !== undefined) {
    const mapping = parseYamlMapping(ANNOTATION.metaData, metaData);
    if (mapping !== undefined) result.metaData = mapping;
  }

  const imageType = get(ANNOTATION.imageType);
  if (imageType !== undefined && imageType !== '') {
    // Virtlet lower-cases this one.
    const t = imageType.toLowerCase();
    if (t !== 'nocloud' && t !== 'configdrive') throw bad(ANNOTATION.imageType, 'must be "nocloud" or "configdrive"', imageType);
    result.cloudInitImageType = t;
  }

  const dhcp = get(ANNOTATION.forceDhcpNetworkConfig);
  if (dhcp !== undefined) result.forceDhcpNetworkConfig = parseBool(ANNOTATION.forceDhcpNetworkConfig, dhcp);

  return result;
}

const BINARY_SUFFIX: Record<string, bigint> = {
  Ki: 1n << 10n,
  Mi: 1n << 20n,
  Gi: 1n << 30n,
  Ti: 1n << 40n,
  Pi: 1n << 50n,
  Ei: 1n << 60n,
};
const DECIMAL_SUFFIX_EXPONENT: Record<string, number> = { n: -9, u: -6, m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };
const QUANTITY = /^([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|[numkMGTPE])?$/;

/**
 * A Kubernetes resource quantity ("4Gi", "512Mi", "1G", "1.5Gi", "2e9") as a whole number of bytes.
 * Returns undefined when the text is not a quantity, is not a whole number of bytes, or exceeds
 * Number.MAX_SAFE_INTEGER.
 */
export function parseQuantityBytes(text: string): number | undefined {
  const m = QUANTITY.exec(text.trim());
  if (!m) return undefined;
  const [, sign, number, suffix = ''] = m;
  const [whole = '', fraction = ''] = number!.split('.');
  // value = digits / 10^fraction.length, then scaled by the suffix; kept exact with BigInt.
  let numerator = BigInt((whole || '0') + fraction);
  let denominator = 10n ** BigInt(fraction.length);
  if (suffix in BINARY_SUFFIX) {
    numerator *= BINARY_SUFFIX[suffix]!;
  } else {
    const exponent = suffix.startsWith('e') || suffix.startsWith('E') ? Number(suffix.slice(1)) : DECIMAL_SUFFIX_EXPONENT[suffix]!;
    if (!Number.isInteger(exponent) || Math.abs(exponent) > 30) return undefined;
    if (exponent >= 0) numerator *= 10n ** BigInt(exponent);
    else denominator *= 10n ** BigInt(-exponent);
  }
  if (numerator % denominator !== 0n) return undefined;
  let value = numerator / denominator;
  if (sign === '-') value = -value;
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < -BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  return Number(value);
}

function parseBool(name: string, value: string): boolean {
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw bad(name, 'must be "true" or "false"', value);
}

/** One key per line; blank lines dropped; each key one printable line of OpenSSH public-key text. */
function parseSshKeys(text: string): string[] {
  const keys = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  if (keys.length > MAX_SSH_KEYS) throw bad(ANNOTATION.sshKeys, `has more than ${MAX_SSH_KEYS} keys`);
  keys.forEach((key, i) => {
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(key)) throw bad(ANNOTATION.sshKeys, `key ${i + 1} contains a control character`);
    if (!/^\S+\s+\S+/.test(key)) throw bad(ANNOTATION.sshKeys, `key ${i + 1} is not "<type> <base64> [comment]"`);
  });
  return keys;
}

/**
 * Parses a YAML mapping with YAML 1.1 semantics — those of PyYAML, which cloud-init uses — so a
 * value means the same to vmlet as to the guest (e.g. `yes` is a boolean, `0644` an octal int).
 * Empty text means "nothing given". Anything but one mapping document is malformed.
 */
function parseYamlMapping(name: string, text: string): YamlMapping | undefined {
  if (text.trim() === '') return undefined;
  // Size, depth, tokens, aliases and cycles are bounded there (a 60000-deep document must never
  // reach the parser's recursion); each refusal names the annotation.
  const value = parseYamlBounded(text, `annotation ${name}`, { version: '1.1', limits: { maxBytes: MAX_ANNOTATION_BYTES } });
  if (value === null || value === undefined) return undefined;
  if (typeof value !== 'object' || Object.getPrototypeOf(value) !== Object.prototype) {
    throw bad(name, 'must be a YAML mapping');
  }
  return value as YamlMapping;
}

function bad(name: string, problem: string, value?: string): InvalidArgumentError {
  const shown = value === undefined ? '' : ` (got ${JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value)})`;
  return new InvalidArgumentError(`annotation ${name} ${problem}${shown}`);
}
