/**
 * The one configuration table. Flags, VMLET_* environment variables, config-file keys, `--help`
 * text and the README's table are all derived from these rows, so they cannot disagree.
 */
import { existsSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { isIPv6 } from 'node:net';

export type KvmMode = 'auto' | 'on' | 'off';
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

export interface Config {
  socket: string;
  stateDir: string;
  imageDir: string;
  libvirtUri: string;
  libvirtSocket: string;
  cniConfDir: string;
  cniBinDir: string[];
  cniCacheDir: string;
  imageTranslationsDir: string;
  logLevel: LogLevel;
  kvm: KvmMode;
  cniTimeoutMs: number;
  dhcpLeaseSeconds: number;
  vmMemory: number;
  vmVcpus: number;
  vmWarmPool: number;
  vmWarmPoolMax: number;
  vmWarmFillParallel: number;
  maxImageSize: number;
  streamAddress: string;
  agentWaitS: number;
  sysfsRoot: string;
  sriov: boolean;
  registryConfigDir: string;
  containerRuntimeEndpoint: string;
  vmImagePrefixes: string[];
  metricsAddress: string;
  calicoSubnet: number;
  masqueradeCidr: string;
  masqueradeIpv6Cidr: string;
  cniCheckIntervalS: number;
  qemuUser: string;
}

export type ConfigKey = keyof Config;

export interface ConfigRow<K extends ConfigKey = ConfigKey> {
  key: K;
  /** Long flag without dashes; also the key in a config file. */
  flag: string;
  env: string;
  /** Default as the user would write it; `{stateDir}` refers to the effective state dir. */
  defaultText: string;
  description: string;
  parse(raw: string): Config[K];
}

export class ConfigError extends Error {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`config ${key}: ${message}`);
    this.name = 'ConfigError';
  }
}

function absolutePath(key: string) {
  return (raw: string): string => {
    if (!isAbsolute(raw)) throw new ConfigError(key, `must be an absolute path, got ${JSON.stringify(raw)}`);
    if (raw.includes('\0')) throw new ConfigError(key, 'must not contain NUL');
    return raw;
  };
}

function oneOf<T extends string>(key: string, values: readonly T[]) {
  return (raw: string): T => {
    if (!(values as readonly string[]).includes(raw)) {
      throw new ConfigError(key, `must be one of ${values.join(', ')}, got ${JSON.stringify(raw)}`);
    }
    return raw as T;
  };
}

function onOff(key: string) {
  return (raw: string): boolean => {
    if (raw === 'on' || raw === 'true') return true;
    if (raw === 'off' || raw === 'false') return false;
    throw new ConfigError(key, `must be on or off, got ${JSON.stringify(raw)}`);
  };
}

function countUpTo(key: string, max: number) {
  return (raw: string): number => {
    if (!/^\d+$/.test(raw.trim())) throw new ConfigError(key, `must be a whole number, got ${JSON.stringify(raw)}`);
    const n = Number(raw);
    if (n > max) throw new ConfigError(key, `must be between 0 and ${max}, got ${n}`);
    return n;
  };
}

function positiveInt(key: string, max: number) {
  return (raw: string): number => {
    if (!/^\d+$/.test(raw.trim())) throw new ConfigError(key, `must be a positive integer, got ${JSON.stringify(raw)}`);
    const n = Number(raw);
    if (n < 1 || n > max) throw new ConfigError(key, `must be between 1 and ${max}, got ${n}`);
    return n;
  };
}

/**
 * `floor` (WARM_POOL_MAX_FLOOR until loadConfig resolves it to --vm-warm-pool) or 0..max; loadConfig
 * checks it against the floor. 0 is accepted so that an effective config with no pool (floor and
 * ceiling 0, as serve hands it to netd) reads back as itself.
 */
export const WARM_POOL_MAX_FLOOR = -1;
function warmPoolCeiling(key: string, max: number) {
  return (raw: string): number => {
    if (raw.trim() === 'floor') return WARM_POOL_MAX_FLOOR;
    if (!/^\d+$/.test(raw.trim())) throw new ConfigError(key, `must be floor or a whole number, got ${JSON.stringify(raw)}`);
    const n = Number(raw);
    if (n > max) throw new ConfigError(key, `must be floor or between 0 and ${max}, got ${n}`);
    return n;
  };
}

function integerIn(key: string, min: number, max: number) {
  return (raw: string): number => {
    if (!/^\d{1,10}$/.test(raw.trim())) throw new ConfigError(key, `must be a whole number, got ${JSON.stringify(raw)}`);
    const n = Number(raw);
    if (n < min || n > max) throw new ConfigError(key, `must be between ${min} and ${max}, got ${n}`);
    return n;
  };
}

const BINARY_SUFFIX: Record<string, number> = { '': 1, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };

/** Bytes from a Kubernetes-style binary quantity: 512Mi, 1Gi, 1073741824. */
function byteQuantity(key: string) {
  return (raw: string): number => {
    const m = /^(\d+)(Ki|Mi|Gi|Ti)?$/.exec(raw.trim());
    if (!m) throw new ConfigError(key, `must be a size such as 512Mi or 1Gi, got ${JSON.stringify(raw)}`);
    const bytes = Number(m[1]) * BINARY_SUFFIX[m[2] ?? '']!;
    if (bytes < 16 * 2 ** 20 || !Number.isSafeInteger(bytes)) throw new ConfigError(key, 'must be at least 16Mi');
    return bytes;
  };
}

export const DEBIAN_CNI_BIN_DIR = '/usr/lib/cni';

function defaultCniBinDir(): string {
  return existsSync(DEBIAN_CNI_BIN_DIR) ? `/opt/cni/bin:${DEBIAN_CNI_BIN_DIR}` : '/opt/cni/bin';
}

export const CONFIG_TABLE: readonly ConfigRow[] = [
  { key: 'socket', flag: 'socket', env: 'VMLET_SOCKET', defaultText: '/run/vmlet/vmlet.sock',
    description: 'Unix socket the CRI gRPC services listen on (mode 0600, directory 0700)', parse: absolutePath('socket') },
  { key: 'stateDir', flag: 'state-dir', env: 'VMLET_STATE_DIR', defaultText: '/var/lib/vmlet',
    description: 'Directory for sandbox and container records and other runtime state', parse: absolutePath('state-dir') },
  { key: 'imageDir', flag: 'image-dir', env: 'VMLET_IMAGE_DIR', defaultText: '{stateDir}/images',
    description: 'Content-addressed store of VM disk images', parse: absolutePath('image-dir') },
  { key: 'libvirtUri', flag: 'libvirt-uri', env: 'VMLET_LIBVIRT_URI', defaultText: 'qemu:///system',
    description: 'libvirt connection URI', parse: oneOf('libvirt-uri', ['qemu:///system'] as const) },
  { key: 'libvirtSocket', flag: 'libvirt-socket', env: 'VMLET_LIBVIRT_SOCKET', defaultText: '/run/libvirt/libvirt-sock',
    description: "libvirtd's RPC socket for that URI", parse: absolutePath('libvirt-socket') },
  { key: 'cniConfDir', flag: 'cni-conf-dir', env: 'VMLET_CNI_CONF_DIR', defaultText: '/etc/cni/net.d',
    description: 'CNI network configurations (.conf, .conflist, .json; the first by file name wins)', parse: absolutePath('cni-conf-dir') },
  { key: 'cniBinDir', flag: 'cni-bin-dir', env: 'VMLET_CNI_BIN_DIR', defaultText: '/opt/cni/bin (plus /usr/lib/cni when present)',
    description: 'Colon-separated directories searched for CNI plugins',
    parse: (raw) => raw.split(':').filter((d) => d !== '').map((d) => absolutePath('cni-bin-dir')(d)) },
  { key: 'cniCacheDir', flag: 'cni-cache-dir', env: 'VMLET_CNI_CACHE_DIR', defaultText: '{stateDir}/cni-cache',
    description: 'Cached CNI ADD results, so DEL works after a restart', parse: absolutePath('cni-cache-dir') },
  { key: 'imageTranslationsDir', flag: 'image-translations-dir', env: 'VMLET_IMAGE_TRANSLATIONS_DIR', defaultText: '/etc/vmlet/images',
    description: 'Virtlet-compatible image name translation files (YAML); re-read on change', parse: absolutePath('image-translations-dir') },
  { key: 'logLevel', flag: 'log-level', env: 'VMLET_LOG_LEVEL', defaultText: 'info',
    description: 'trace, debug, info, warn, error, fatal or silent (debug logs one line per RPC)',
    parse: oneOf('log-level', ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const) },
  { key: 'kvm', flag: 'kvm', env: 'VMLET_KVM', defaultText: 'auto',
    description: 'Use KVM: on, off (TCG), or auto (a bounded real probe at start decides)', parse: oneOf('kvm', ['auto', 'on', 'off'] as const) },
  { key: 'cniTimeoutMs', flag: 'cni-timeout-ms', env: 'VMLET_CNI_TIMEOUT_MS', defaultText: '60000',
    description: 'Time limit for one CNI plugin call, in milliseconds', parse: positiveInt('cni-timeout-ms', 3_600_000) },
  { key: 'dhcpLeaseSeconds', flag: 'dhcp-lease-time', env: 'VMLET_DHCP_LEASE_TIME', defaultText: '86400',
    description: "Seconds of the DHCPv4 leases vmlet gives VMs; a guest renews at half of it (T1), by unicast to vmlet's server address (20-4294967294)",
    parse: integerIn('dhcp-lease-time', 20, 4_294_967_294) },
  { key: 'vmMemory', flag: 'vm-memory', env: 'VMLET_VM_MEMORY', defaultText: '512Mi',
    description: "VM memory when the container sets no memory limit", parse: byteQuantity('vm-memory') },
  { key: 'vmVcpus', flag: 'vm-vcpus', env: 'VMLET_VM_VCPUS', defaultText: '1',
    description: 'vCPUs when neither VirtletVCPUCount nor a CPU limit is given', parse: positiveInt('vm-vcpus', 256) },
  { key: 'vmWarmPool', flag: 'vm-warm-pool', env: 'VMLET_VM_WARM_POOL', defaultText: '1',
    description: 'Paused VMs of the default shape kept ready for new pods (0: none); the floor when --vm-warm-pool-max is higher', parse: countUpTo('vm-warm-pool', 16) },
  { key: 'vmWarmPoolMax', flag: 'vm-warm-pool-max', env: 'VMLET_VM_WARM_POOL_MAX', defaultText: 'floor',
    description: 'Most paused VMs kept ready when pods arrive in bursts: the pool aims at --vm-warm-pool plus the claims of the last minute, up to this (floor: the same as --vm-warm-pool, a fixed size)',
    parse: warmPoolCeiling('vm-warm-pool-max', 16) },
  { key: 'vmWarmFillParallel', flag: 'vm-warm-fill-parallel', env: 'VMLET_VM_WARM_FILL_PARALLEL', defaultText: '1',
    description: "Warm VMs a refill starts at once (each QEMU start takes about a core's worth of CPU while it lasts)", parse: positiveInt('vm-warm-fill-parallel', 8) },
  { key: 'maxImageSize', flag: 'max-image-size', env: 'VMLET_MAX_IMAGE_SIZE', defaultText: '64Gi',
    description: 'Largest image download accepted; a pull announcing or sending more is refused (RESOURCE_EXHAUSTED)', parse: byteQuantity('max-image-size') },
  { key: 'streamAddress', flag: 'stream-address', env: 'VMLET_STREAM_ADDRESS', defaultText: '127.0.0.1:0',
    description: 'host:port of the streaming server for exec, attach and port-forward (port 0: a free one)', parse: listenAddress('stream-address') },
  { key: 'agentWaitS', flag: 'agent-wait', env: 'VMLET_AGENT_WAIT', defaultText: '30',
    description: "Seconds an Exec, or an ExecSync without a timeout, waits for the VM's guest agent to answer (a guest just started has not run it yet); then FAILED_PRECONDITION (1-3600)",
    parse: positiveInt('agent-wait', 3600) },
  { key: 'sysfsRoot', flag: 'sysfs-root', env: 'VMLET_SYSFS_ROOT', defaultText: '/sys',
    description: 'Where sysfs is mounted; SR-IOV VFs are found and rebound through it', parse: absolutePath('sysfs-root') },
  { key: 'sriov', flag: 'sriov', env: 'VMLET_SRIOV', defaultText: 'off',
    description: 'on: SR-IOV VFs in a pod netns go to its VM as PCI devices (vfio-pci); off: such a pod fails (FAILED_PRECONDITION)', parse: onOff('sriov') },
  { key: 'registryConfigDir', flag: 'registry-config-dir', env: 'VMLET_REGISTRY_CONFIG_DIR', defaultText: '/etc/vmlet/certs.d',
    description: "Registry mirrors, CAs and TLS settings for containerDisk pulls: containerd's config_path layout (<host>/hosts.toml)", parse: absolutePath('registry-config-dir') },
  { key: 'containerRuntimeEndpoint', flag: 'container-runtime-endpoint', env: 'VMLET_CONTAINER_RUNTIME_ENDPOINT', defaultText: 'none',
    description: 'CRI socket of a container runtime (e.g. unix:///run/containerd/containerd.sock) that runs every pod that is not a VM pod (none: every pod is a VM pod)',
    parse: criEndpoint('container-runtime-endpoint') },
  { key: 'vmImagePrefixes', flag: 'vm-image-prefixes', env: 'VMLET_VM_IMAGE_PREFIXES', defaultText: 'none',
    description: 'With a container runtime: comma-separated registry hosts or repositories (e.g. quay.io/containerdisks) whose images are always VM images, pulled by vmlet (none: only pulls for VM pods)',
    parse: imagePrefixList('vm-image-prefixes') },
  { key: 'metricsAddress', flag: 'metrics-address', env: 'VMLET_METRICS_ADDRESS', defaultText: 'none',
    description: 'HOST:PORT serving Prometheus metrics at /metrics (RPCs, pods and VMs by state, warm pool, netd restarts); none: off',
    parse: optionalListenAddress('metrics-address') },
  { key: 'calicoSubnet', flag: 'calico-subnet', env: 'VMLET_CALICO_SUBNET', defaultText: '24',
    description: "Prefix length a VM gets for a Calico pod IP (a /32 with a link-scope gateway): the pod IP's /N, its fake gateway the /N's last host address (8-30)",
    parse: prefixLength('calico-subnet', 8, 30) },
  { key: 'masqueradeCidr', flag: 'masquerade-cidr', env: 'VMLET_MASQUERADE_CIDR', defaultText: '10.0.2.0/24',
    description: 'Internal IPv4 network of a VM behind the masquerade binding (annotation vmlet.io/network-binding: masquerade): gateway its first address, the VM the second (/8-/30); a second masqueraded interface takes the next block of this size',
    parse: ipv4Network('masquerade-cidr') },
  { key: 'masqueradeIpv6Cidr', flag: 'masquerade-ipv6-cidr', env: 'VMLET_MASQUERADE_IPV6_CIDR', defaultText: 'fd10:0:2::/120',
    description: 'Internal IPv6 network of a masqueraded VM whose pod interface has an IPv6 address (NAT66): gateway its first address, the VM the second, by DHCPv6 and router advertisements (/64-/126)',
    parse: ipv6Network('masquerade-ipv6-cidr') },
  { key: 'cniCheckIntervalS', flag: 'cni-check-interval', env: 'VMLET_CNI_CHECK_INTERVAL', defaultText: '0',
    description: "Seconds between CNI CHECKs of every ready sandbox's networks; a failure is logged and shown in PodSandboxStatus (0: only on a verbose PodSandboxStatus)",
    parse: countUpTo('cni-check-interval', 86_400) },
  { key: 'qemuUser', flag: 'qemu-user', env: 'VMLET_QEMU_USER', defaultText: 'vmlet-qemu',
    description: "Local user QEMU runs as (its uid and primary group, no capabilities); vmlet gives it only the VM's files. root: QEMU keeps uid 0 without capabilities", parse: userName('qemu-user') },
];

function prefixLength(key: string, min: number, max: number) {
  return (raw: string): number => {
    if (!/^\d{1,2}$/.test(raw.trim())) throw new ConfigError(key, `must be a prefix length, got ${JSON.stringify(raw)}`);
    const n = Number(raw);
    if (n < min || n > max) throw new ConfigError(key, `must be between ${min} and ${max}, got ${n}`);
    return n;
  };
}

function ipv4Network(key: string) {
  return (raw: string): string => {
    const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(raw.trim());
    const octets = m ? m.slice(1, 5).map(Number) : [];
    const prefix = m ? Number(m[5]) : NaN;
    if (!m || octets.some((o) => o > 255) || prefix < 8 || prefix > 30) throw new ConfigError(key, `must be an IPv4 network /8 to /30 such as 10.0.2.0/24, got ${JSON.stringify(raw)}`);
    const value = octets.reduce((acc, o) => acc * 256 + o, 0);
    if (value % 2 ** (32 - prefix) !== 0) throw new ConfigError(key, `${raw} has host bits set`);
    return raw.trim();
  };
}

function ipv6Network(key: string) {
  return (raw: string): string => {
    const text = raw.trim().toLowerCase();
    const slash = text.indexOf('/');
    const address = slash < 0 ? '' : text.slice(0, slash);
    const prefix = slash < 0 || !/^\d{1,3}$/.test(text.slice(slash + 1)) ? NaN : Number(text.slice(slash + 1));
    if (!isIPv6(address) || address.includes('.') || !(prefix >= 64 && prefix <= 126)) throw new ConfigError(key, `must be an IPv6 network /64 to /126 such as fd10:0:2::/120, got ${JSON.stringify(raw)}`);
    const value = ipv6Value(address);
    if (value % 2n ** BigInt(128 - prefix) !== 0n) throw new ConfigError(key, `${raw} has host bits set`);
    return text;
  };
}

/** An IPv6 address (isIPv6 already said it is one, without a zone or dotted tail) as a number. */
function ipv6Value(address: string): bigint {
  const [head, tail] = address.includes('::') ? address.split('::') : [address, undefined];
  const front = head ? head.split(':') : [];
  const back = tail ? tail.split(':') : [];
  const groups = tail === undefined ? front : [...front, ...Array<string>(8 - front.length - back.length).fill('0'), ...back];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

function userName(key: string) {
  return (raw: string): string => {
    if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(raw)) throw new ConfigError(key, `must be a user name, got ${JSON.stringify(raw)}`);
    return raw;
  };
}

function listenAddress(key: string) {
  return (raw: string): string => {
    const m = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(raw);
    if (!m || Number(m[1]) > 65535) throw new ConfigError(key, `must be host:port, got ${JSON.stringify(raw)}`);
    return raw;
  };
}

/** '' or `none` (off), or a unix socket of a CRI runtime: `unix:///path`, `unix:/path` or an absolute path. */
function criEndpoint(key: string) {
  return (raw: string): string => {
    const value = raw.trim();
    if (value === '' || value === 'none') return '';
    const path = value.startsWith('unix://') ? value.slice('unix://'.length) : value.startsWith('unix:') ? value.slice('unix:'.length) : value;
    if (!isAbsolute(path) || path.includes('\0')) throw new ConfigError(key, `must be unix:///absolute/path.sock (or empty for none), got ${JSON.stringify(raw)}`);
    return `unix://${path}`;
  };
}

/** `none`/'' or comma-separated image name prefixes: a registry host, or host/repository path. */
function imagePrefixList(key: string) {
  return (raw: string): string[] => {
    const value = raw.trim();
    if (value === '' || value === 'none') return [];
    return value.split(',').map((entry) => {
      const p = entry.trim();
      if (!/^[a-z0-9][a-z0-9._-]*(:\d{1,5})?(\/[a-z0-9][a-z0-9._\/-]*)?\/?$/.test(p)) {
        throw new ConfigError(key, `each entry must be a registry host or host/repository prefix (lower case, no tag or digest), got ${JSON.stringify(p)}`);
      }
      return p;
    });
  };
}

/** '' or `none` (off), or HOST:PORT ([v6]:PORT) for the Prometheus endpoint. */
function optionalListenAddress(key: string) {
  return (raw: string): string => {
    const value = raw.trim();
    if (value === '' || value === 'none') return '';
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s\[\]]+)):(\d{1,5})$/.exec(value);
    if (!m || Number(m[3]) < 1 || Number(m[3]) > 65535) throw new ConfigError(key, `must be HOST:PORT (e.g. 127.0.0.1:9464) or none, got ${JSON.stringify(raw)}`);
    return value;
  };
}

/** The default as a string the row's parser accepts, with `{stateDir}` resolved. */
export function defaultRaw(row: ConfigRow, stateDir: string): string {
  if (row.key === 'cniBinDir') return defaultCniBinDir();
  return row.defaultText.replace('{stateDir}', stateDir);
}
