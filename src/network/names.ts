/**
 * Every name and MAC the network wiring derives, as pure functions of (sandbox id, interface index).
 * Deterministic, so a restarted netd recomputes the same names and can find what an earlier run
 * built; short enough for the kernel (IFNAMSIZ 16 bytes including the NUL, so 15 characters).
 */
import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';

export const IFNAME_MAX_LENGTH = 15;
/** Every netns vmlet creates starts with this, so netd can list (and garbage-collect) its own. */
export const NETNS_PREFIX = 'vmlet-';
/** Interfaces per sandbox; two decimal digits in the device names. */
export const MAX_INTERFACE_INDEX = 99;

/** Sandbox ids as vmlet's record store mints and accepts them. */
const SANDBOX_ID = /^[a-z0-9]{1,128}$/;
/** Netns names vmlet owns: the prefix, then lower-case letters, digits and dashes. */
const NETNS_NAME = /^vmlet-[a-z0-9][a-z0-9-]{0,62}$/;
/** Linux interface names: 1-15 bytes, no "/", ":" or whitespace, not "." or "..". */
const IFNAME = /^[^\s/:]{1,15}$/;
/** Stricter than the kernel: whatever ends up in iproute2 batch lines and nft strings. */
const SAFE_IFNAME = /^[A-Za-z0-9_.@+-]{1,15}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export function assertSandboxId(sandboxId: string): void {
  if (typeof sandboxId !== 'string' || !SANDBOX_ID.test(sandboxId)) {
    throw new InvalidArgumentError(`sandbox id ${JSON.stringify(sandboxId)} must be 1-128 of [a-z0-9]`);
  }
}

export function assertNetnsName(name: string): void {
  if (typeof name !== 'string' || !NETNS_NAME.test(name) || name.endsWith('-')) {
    throw new InvalidArgumentError(`netns name ${JSON.stringify(name)} is not a vmlet netns name`);
  }
}

export function isVmletNetnsName(name: string): boolean {
  return NETNS_NAME.test(name) && !name.endsWith('-');
}

/**
 * An interface name that is valid for the kernel and safe to put in an iproute2 batch line or an
 * nft rule string (CNI lets plugins pick names; quotes, '#' or '\' would change those scripts).
 */
export function assertInterfaceName(name: string): void {
  if (typeof name !== 'string' || !IFNAME.test(name) || !SAFE_IFNAME.test(name) || name === '.' || name === '..') {
    throw new InvalidArgumentError(`interface name ${JSON.stringify(name)} is not a usable interface name`);
  }
}

function assertIndex(index: number): void {
  if (!Number.isInteger(index) || index < 0 || index > MAX_INTERFACE_INDEX) {
    throw new InvalidArgumentError(`interface index ${index} must be an integer in 0..${MAX_INTERFACE_INDEX}`);
  }
}

function digest(...parts: string[]): Buffer {
  // NUL separators: ("ab","c") and ("a","bc") must not hash alike.
  return createHash('sha256').update(parts.join('\0')).digest();
}

/** RFC 4648 "base32hex" alphabet: lower-case letters and digits only, 5 bits a character. */
const BASE32HEX = '0123456789abcdefghijklmnopqrstuv';

function base32hex(bytes: Buffer, length: number): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const byte of bytes) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < length) {
      bits -= 5;
      out += BASE32HEX[(acc >> bits) & 31];
    }
    acc &= (1 << bits) - 1;
    if (out.length >= length) break;
  }
  return out;
}

/** Hash characters naming one sandbox in device names: 45 bits, so host-wide clashes stay unlikely. */
const SANDBOX_TAG_LENGTH = 9;

function sandboxTag(sandboxId: string): string {
  return base32hex(digest('vmlet-ifname', sandboxId), SANDBOX_TAG_LENGTH);
}

/** Netns made ahead of any sandbox for a warm VM; a sandbox then adopts it (src/container/warm/pool.ts). */
const WARM_NETNS_NAME = /^vmlet-warm-[0-9a-f]{16}$/;

/**
 * A warm netns name: `vmlet-warm-` + the first 8 hex of the owner id (ownerIdFor) + 8 random hex, so
 * a netd collects only its own instance's warm netns, never another vmlet's on the same host.
 */
export function warmNetnsName(ownerId: string, randomHex: string): string {
  const name = `vmlet-warm-${ownerId.slice(0, 8)}${randomHex}`;
  if (!WARM_NETNS_NAME.test(name)) throw new Error(`bad warm netns parts ${JSON.stringify([ownerId, randomHex])}`);
  return name;
}

/** Whether warm netns `name` was made by the instance with `ownerId`. */
export function isOwnWarmNetns(name: string, ownerId: string): boolean {
  return isWarmNetnsName(name) && name.slice('vmlet-warm-'.length, 'vmlet-warm-'.length + 8) === ownerId.slice(0, 8);
}

export function isWarmNetnsName(name: string): boolean {
  return typeof name === 'string' && WARM_NETNS_NAME.test(name);
}

/** The interface name CNI creates in the sandbox, as kubelet asks for it. */
export const POD_IFNAME = 'eth0';

/**
 * The pod netns of a sandbox: "vmlet-" and the id itself when it is at most 16 characters,
 * otherwise its first 8 characters (so an operator can match it by eye) and 8 hash characters
 * (so ids sharing a prefix still get distinct namespaces).
 */
export function netnsNameFor(sandboxId: string): string {
  assertSandboxId(sandboxId);
  if (sandboxId.length <= 16) return `${NETNS_PREFIX}${sandboxId}`;
  return `${NETNS_PREFIX}${sandboxId.slice(0, 8)}${base32hex(digest('vmlet-netns', sandboxId), 8)}`;
}

export interface InterfaceNames {
  /** Bridge joining the CNI veth and the TAP inside the pod netns: "vbr" + tag + index (14 chars). */
  bridge: string;
  /** TAP QEMU opens: "vtap" + tag + index (15 chars). */
  tap: string;
}

/**
 * Device names for interface `index` of a sandbox. Bridge and TAP share the sandbox tag so they are
 * easy to pair by eye; the tag is a hash, not an id prefix, so TAPs stay distinct host-wide too
 * (a TAP may be created in the host namespace and moved into the pod's).
 */
export function interfaceNames(sandboxId: string, index: number): InterfaceNames {
  assertSandboxId(sandboxId);
  assertIndex(index);
  const tag = sandboxTag(sandboxId);
  const suffix = String(index).padStart(2, '0');
  return { bridge: `vbr${tag}${suffix}`, tap: `vtap${tag}${suffix}` };
}

/**
 * Bridge and TAP made in a warm netns before any sandbox exists (see TapBinding.prewire): named
 * after the netns, since the sandbox id is not known yet. Same shapes as interfaceNames.
 */
export function prewiredNames(warmNetnsName: string): InterfaceNames {
  assertNetnsName(warmNetnsName);
  const tag = base32hex(digest('vmlet-warm-devices', warmNetnsName), SANDBOX_TAG_LENGTH);
  return { bridge: `vbr${tag}00`, tap: `vtap${tag}00` };
}

/** Lower-case colon form of a 48-bit MAC; throws InvalidArgumentError on anything else. */
export function normalizeMac(mac: string): string {
  const lower = typeof mac === 'string' ? mac.toLowerCase() : '';
  if (!MAC.test(lower)) throw new InvalidArgumentError(`${JSON.stringify(mac)} is not a 48-bit MAC address`);
  return lower;
}

/** Unicast (I/G bit clear) and locally administered (U/L bit set): ours to assign. */
export function isLocalUnicastMac(mac: string): boolean {
  const first = parseInt(normalizeMac(mac).slice(0, 2), 16);
  return (first & 0x01) === 0 && (first & 0x02) === 0x02;
}

function macFromDigest(bytes: Buffer): string {
  const octets = [...bytes.subarray(0, 6)];
  octets[0] = (octets[0]! & 0xfc) | 0x02;
  return octets.map((o) => o.toString(16).padStart(2, '0')).join(':');
}

/**
 * A locally administered unicast MAC for `purpose` of interface `index` of a sandbox, different
 * from every MAC in `avoid`. Deterministic: rehashes with a counter only in the (2^-46) case of a
 * clash, so the same inputs always give the same MAC.
 */
function derivedMac(purpose: string, sandboxId: string, index: number, avoid: readonly string[]): string {
  assertSandboxId(sandboxId);
  assertIndex(index);
  const taken = new Set(avoid.map(normalizeMac));
  for (let attempt = 0; ; attempt++) {
    const mac = macFromDigest(digest(purpose, sandboxId, String(index), String(attempt)));
    if (!taken.has(mac)) return mac;
  }
}

/**
 * The MAC the CNI veth carries while it is a bridge port. The VM's NIC takes over the veth's
 * original MAC, so the veth needs another one: two ports of one L2 segment with one MAC would make
 * every switch on the path flap.
 */
export function vethMacFor(sandboxId: string, index: number, originalMac: string): string {
  return derivedMac('vmlet-veth-mac', sandboxId, index, [originalMac]);
}

/**
 * The pod bridge's own MAC, set explicitly: otherwise Linux gives a bridge the lowest MAC among its
 * ports, which changes as ports come and go and would make the DHCP server's source MAC wander.
 */
export function bridgeMacFor(sandboxId: string, index: number, avoid: readonly string[]): string {
  return derivedMac('vmlet-bridge-mac', sandboxId, index, avoid);
}
