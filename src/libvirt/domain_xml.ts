/**
 * VmSpec → libvirt domain XML, and the vmlet ids back out of a domain's XML.
 *
 * Every value goes through xmlbuilder2 via `add`/`text` below, and every value is validated first:
 * control characters are refused outright because XML cannot carry most of them and parsers
 * silently turn tabs/newlines in attributes into spaces. xmlbuilder2 escapes < > " but leaves an
 * "&" that starts something entity-like ("&lt;", "&#46;") alone, so a path "/x/&#46;&#46;/etc"
 * would reach libvirt as "/x/../etc"; `literal` escapes every "&" first to keep values literal.
 *
 * Choices made here:
 * - Machine type q35: SR-IOV VFs are PCIe functions and keep their PCIe capabilities only in a PCIe
 *   slot (q35 root ports, not i440fx's conventional PCI bus); and q35 root ports give native PCIe
 *   hotplug for volumes attached later. libvirt adds the root ports and assigns all PCI addresses.
 * - The seed CD-ROM sits on virtio-scsi, not on q35's built-in SATA (see addDisks).
 * - Serial console to a file (`<serial type='file'>` with append='on'). The CRI container log
 *   must be a CRI-format file written by vmlet, and console output produced while vmlet restarts
 *   must not be lost. With a file, QEMU itself keeps every byte on disk whether or not vmlet is
 *   running; vmlet tails the file, converts to CRI lines and persists the byte offset it has
 *   consumed, so after a restart it resumes exactly where it stopped. A unix socket would drop
 *   output while no reader is connected, and a pty blocks or drops when nobody drains it.
 *   append='on' keeps earlier output when the domain is started again.
 * - Boot only from the root disk (<boot dev='hd'/>); the seed CD-ROM is never booted.
 * - No USB controller, no PXE ROMs on NICs, memballoon none by default: fewer emulated devices boot
 *   faster under TCG, and vmlet never balloons or PXE-boots. A virtio RNG feeds guest entropy.
 */
import { create } from 'xmlbuilder2';
import { isAbsolute, normalize } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import { WARM_PORT_ALIAS, WARM_SEED_ALIAS, type CpuTune, type DataDisk, type SeedKind, type Share, type VmNic, type VmSpec, type VmletDomainMetadata } from './domain_spec.js';

type XMLBuilder = ReturnType<typeof create>;

/** What parseDomainMetadata recovers from a domain vmlet defined. */
export interface DomainMetadata extends VmletDomainMetadata {
  /** How the seed was built, so a recovering vmlet can rebuild it the same way. */
  seedKind?: SeedKind;
}

/** The few DOM members parseDomainMetadata needs (the project does not load the DOM lib). */
interface XmlElement {
  readonly localName: string;
  readonly namespaceURI: string | null;
  readonly childNodes: ArrayLike<{ readonly nodeType: number }>;
  getAttribute(name: string): string | null;
}

/** Namespace of libvirt's QEMU extensions (<qemu:commandline>). */
export const QEMU_NAMESPACE = 'http://libvirt.org/schemas/domain/qemu/1.0';
/** Namespace of vmlet's element inside <metadata>; libvirt keys custom metadata by this URI. */
export const VMLET_METADATA_NAMESPACE = 'urn:vmlet:domain:1';
const VMLET_PREFIX = 'vmlet';

const MACHINE_TYPE = 'q35';
const ARCH = 'x86_64';

// C0/C1 controls, DEL, the XML non-characters U+FFFE/U+FFFF and unpaired surrogates.
const UNSAFE_TEXT = /[\u0000-\u001f\u007f-\u009f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

const DOMAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** vmlet-generated ids (sandbox/container): hex or similar short tokens. */
const VMLET_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
/** Kernel interface names: at most IFNAMSIZ-1 = 15 bytes, no '/', no whitespace, not "." or "..". */
const IFNAME = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,15}$/;
const PCI_ADDRESS = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/;
/** libvirt's filter-param-name pattern for <qemu:env name>. */
const ENV_NAME = /^[A-Za-z0-9_]+$/;
const MAX_PATH = 4096;

/** Builds the domain XML for `spec`; throws InvalidArgumentError naming the first bad field. */
export function buildDomainXml(spec: VmSpec): string {
  validateVmSpec(spec);
  const domain = create({ version: '1.0' }).ele('domain', literalAttrs({ type: spec.domainType }));
  const emulatorArgs = spec.emulatorArgs ?? [];
  const hasCommandline = spec.emulatorEnv.length > 0 || emulatorArgs.length > 0;
  if (hasCommandline) domain.att('xmlns:qemu', QEMU_NAMESPACE);

  text(add(domain, 'name'), spec.name);
  text(add(domain, 'uuid'), spec.uuid.toLowerCase());
  addMetadata(domain, spec.metadata, spec.seed?.kind);
  // KiB is libvirt's native unit; round up so the guest never gets less than asked.
  text(add(domain, 'memory', { unit: 'KiB' }), String(Math.ceil(spec.memoryBytes / 1024)));
  if ((spec.shares ?? []).length > 0) {
    // vhost-user (virtiofsd) maps guest memory into another process: it must be shareable.
    const backing = add(domain, 'memoryBacking');
    add(backing, 'source', { type: 'memfd' });
    add(backing, 'access', { mode: 'shared' });
  }
  text(add(domain, 'vcpu', { placement: 'static' }), String(spec.vcpus));
  addCputune(domain, spec);

  const os = add(domain, 'os');
  text(add(os, 'type', { arch: ARCH, machine: MACHINE_TYPE }), 'hvm');
  add(os, 'boot', { dev: 'hd' });
  const features = add(domain, 'features');
  add(features, 'acpi');
  add(features, 'apic');
  if (spec.cpuMode !== undefined) add(domain, 'cpu', { mode: spec.cpuMode });
  add(domain, 'clock', { offset: 'utc' });
  text(add(domain, 'on_poweroff'), 'destroy');
  text(add(domain, 'on_reboot'), 'restart');
  text(add(domain, 'on_crash'), 'destroy');

  const devices = add(domain, 'devices');
  text(add(devices, 'emulator'), spec.emulator);
  addDisks(devices, spec);
  (spec.dataDisks ?? []).forEach((disk, i) => addDataDisk(devices, disk, i));
  add(devices, 'controller', { type: 'usb', index: '0', model: 'none' });
  for (const nic of spec.nics) addNic(devices, nic);
  (spec.shares ?? []).forEach((share, i) => addShare(devices, share, i));
  addSerial(devices, spec);
  if (spec.guestAgentSocket !== undefined) {
    const channel = add(devices, 'channel', { type: 'unix' });
    add(channel, 'source', { mode: 'bind', path: spec.guestAgentSocket });
    add(channel, 'target', { type: 'virtio', name: 'org.qemu.guest_agent.0' });
  }
  add(devices, 'memballoon', { model: spec.memballoon ?? 'none' });
  const rng = add(devices, 'rng', { model: 'virtio' });
  text(add(rng, 'backend', { model: 'random' }), '/dev/urandom');
  if (spec.warm) addWarmPorts(devices, rng, spec.warm.hotplugPorts);
  if (spec.filesLabelledByVmlet === true) {
    // Emulator as root (the launcher drops QEMU to its own user), no relabelling by libvirt.
    const seclabel = add(domain, 'seclabel', { type: 'static', model: 'dac', relabel: 'no' });
    text(add(seclabel, 'label'), '+0:+0');
  }

  if (hasCommandline) {
    const cmdline = domain.ele(QEMU_NAMESPACE, 'qemu:commandline');
    for (const arg of emulatorArgs) cmdline.ele(QEMU_NAMESPACE, 'qemu:arg', literalAttrs({ value: arg }));
    for (const env of spec.emulatorEnv) {
      cmdline.ele(QEMU_NAMESPACE, 'qemu:env', literalAttrs({ name: env.name, value: env.value }));
    }
  }
  // wellFormed: the serializer also refuses characters XML cannot carry (second line of defence).
  return domain.end({ prettyPrint: true, headless: true, wellFormed: true }) + '\n';
}

/** Appends child element `name` with `attributes` (values kept literal). */
function add(parent: XMLBuilder, name: string, attributes: Record<string, string> = {}): XMLBuilder {
  return parent.ele(name, literalAttrs(attributes));
}

/** Sets the text content of `el` (kept literal). */
function text(el: XMLBuilder, value: string): void {
  el.txt(literal(value));
}

function literalAttrs(attributes: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(attributes)) out[k] = literal(v);
  return out;
}

/** See the header: makes xmlbuilder2 emit every "&" as "&amp;". */
function literal(value: string): string {
  return value.replace(/&/g, '&amp;');
}

/**
 * Reads vmlet's ids back from a domain's XML (as libvirt returns it), for recovery after a
 * restart. Returns undefined when the domain carries no (valid) vmlet metadata — e.g. a domain
 * somebody else defined.
 */
export function parseDomainMetadata(xml: string): DomainMetadata | undefined {
  let root: XmlElement;
  try {
    root = create(xml).root().node as unknown as XmlElement;
  } catch {
    return undefined;
  }
  if (root.localName !== 'domain') return undefined;
  const metadata = childElements(root).find((el) => el.localName === 'metadata' && el.namespaceURI === null);
  if (!metadata) return undefined;
  const instance = childElements(metadata).find(
    (el) => el.localName === 'instance' && el.namespaceURI === VMLET_METADATA_NAMESPACE,
  );
  if (!instance) return undefined;
  const field = (name: string, attr: string): string | undefined => {
    const el = childElements(instance).find((c) => c.localName === name && c.namespaceURI === VMLET_METADATA_NAMESPACE);
    return el?.getAttribute(attr) ?? undefined;
  };
  const sandboxId = field('sandbox', 'id');
  const containerId = field('container', 'id');
  // Strict re-validation: the XML may not be ours, and xmlbuilder2's parser decodes entities
  // twice ("&amp;#46;" → "."), so only plain tokens are trusted.
  if (!sandboxId || !containerId || !VMLET_ID.test(sandboxId) || !VMLET_ID.test(containerId)) return undefined;
  const seedKind = field('seed', 'kind');
  const owner = field('owner', 'id');
  const result: DomainMetadata = { sandboxId, containerId };
  if (owner !== undefined && VMLET_ID.test(owner)) result.owner = owner;
  if (seedKind === 'nocloud' || seedKind === 'configdrive') result.seedKind = seedKind;
  return result;
}

function childElements(node: XmlElement): XmlElement[] {
  const out: XmlElement[] = [];
  for (const child of Array.from(node.childNodes)) if (child.nodeType === 1) out.push(child as unknown as XmlElement);
  return out;
}

function addMetadata(domain: XMLBuilder, meta: VmletDomainMetadata, seedKind: SeedKind | undefined): void {
  const ns = VMLET_METADATA_NAMESPACE;
  const instance = add(domain, 'metadata').ele(ns, `${VMLET_PREFIX}:instance`);
  instance.ele(ns, `${VMLET_PREFIX}:sandbox`, literalAttrs({ id: meta.sandboxId }));
  instance.ele(ns, `${VMLET_PREFIX}:container`, literalAttrs({ id: meta.containerId }));
  if (meta.owner !== undefined) instance.ele(ns, `${VMLET_PREFIX}:owner`, literalAttrs({ id: meta.owner }));
  if (seedKind !== undefined) instance.ele(ns, `${VMLET_PREFIX}:seed`, literalAttrs({ kind: seedKind }));
}

function addCputune(domain: XMLBuilder, spec: VmSpec): void {
  const tune = spec.cputune;
  if (!tune || (tune.shares === undefined && tune.period === undefined && tune.quota === undefined)) return;
  const el = add(domain, 'cputune');
  if (tune.shares !== undefined) text(add(el, 'shares'), String(tune.shares));
  if (tune.period !== undefined) text(add(el, 'period'), String(tune.period));
  if (tune.quota !== undefined) text(add(el, 'quota'), String(tune.quota));
}

/** The PCI bus number (the pcie-root-port controller's index) of warm hotplug port `port`. */
export function warmPortBus(port: number): number {
  return port + 3;
}

/**
 * A warm domain's controllers. libvirt puts a device without an address on the first free root
 * port, so the RNG gets port 1 and the virtio-scsi controller (the seed CD-ROM, and a SCSI root
 * disk, Virtlet's default) port 2 explicitly; ports 3.. stay free for hotplug, named by alias.
 */
function addWarmPorts(devices: XMLBuilder, rng: XMLBuilder, count: number): void {
  // Keep in step with warmPortBus.
  add(devices, 'controller', { type: 'pci', index: '0', model: 'pcie-root' });
  add(devices, 'controller', { type: 'pci', index: '1', model: 'pcie-root-port' });
  add(rng, 'address', { type: 'pci', domain: '0x0000', bus: '0x01', slot: '0x00', function: '0x0' });
  add(devices, 'controller', { type: 'pci', index: '2', model: 'pcie-root-port' });
  const scsi = add(devices, 'controller', { type: 'scsi', index: '0', model: 'virtio-scsi' });
  add(scsi, 'address', { type: 'pci', domain: '0x0000', bus: '0x02', slot: '0x00', function: '0x0' });
  for (let i = 0; i < count; i++) {
    const port = add(devices, 'controller', { type: 'pci', index: String(warmPortBus(i)), model: 'pcie-root-port' });
    add(port, 'alias', { name: `${WARM_PORT_ALIAS}${i}` });
  }
}

/**
 * The seed CD-ROM is a SCSI CD-ROM on the virtio-scsi controller, at LUN 1 (target dev sdb), cold
 * and warm alike: a guest that reads its root disk has virtio drivers, while AHCI (q35's SATA) is
 * missing from some cloud kernels (Debian 12's linux-image-cloud-amd64 6.1 has no CONFIG_SATA_AHCI),
 * which then see no seed at all. LUN 0 belongs to a SCSI root disk when there is one.
 */
const SEED_DEV = 'sdb';
const SEED_ADDRESS = { type: 'drive', controller: '0', bus: '0', target: '0', unit: '1' } as const;

function addDisks(devices: XMLBuilder, spec: VmSpec): void {
  const root = spec.rootDisk;
  if (!root) {
    // Warm domain: an empty tray the seed is inserted into later (its controller comes with the
    // warm ports); the root disk is plugged in.
    const cd = add(devices, 'disk', { type: 'file', device: 'cdrom' });
    add(cd, 'driver', { name: 'qemu', type: 'raw' });
    add(cd, 'target', { dev: SEED_DEV, bus: 'scsi' });
    add(cd, 'readonly');
    add(cd, 'alias', { name: WARM_SEED_ALIAS });
    add(cd, 'address', SEED_ADDRESS);
    return;
  }
  const rootEl = add(devices, 'disk', { type: root.format === 'raw' ? 'block' : 'file', device: 'disk' });
  if (root.format === 'raw') {
    // A persistent root device: QEMU reads the device directly (no host page cache, so what the
    // guest flushed is on the device) and the guest sees it from after vmlet's header.
    add(rootEl, 'driver', { name: 'qemu', type: 'raw', cache: 'none', io: 'native' });
    const source = add(rootEl, 'source', { dev: root.path });
    add(add(source, 'slices'), 'slice', { type: 'storage', offset: String(root.slice.offset), size: String(root.slice.size) });
  } else {
    add(rootEl, 'driver', { name: 'qemu', type: root.format });
    add(rootEl, 'source', { file: root.path });
  }
  if (root.driver === 'virtio') {
    add(rootEl, 'target', { dev: 'vda', bus: 'virtio' });
  } else {
    add(rootEl, 'target', { dev: 'sda', bus: 'scsi' });
    add(rootEl, 'address', { type: 'drive', controller: '0', bus: '0', target: '0', unit: '0' });
  }

  if (spec.seed) {
    const cd = add(devices, 'disk', { type: 'file', device: 'cdrom' });
    add(cd, 'driver', { name: 'qemu', type: 'raw' });
    add(cd, 'source', { file: spec.seed.path });
    add(cd, 'target', { dev: SEED_DEV, bus: 'scsi' });
    add(cd, 'readonly');
    add(cd, 'address', SEED_ADDRESS);
  }

  if (root.driver === 'scsi' || spec.seed) add(devices, 'controller', { type: 'scsi', index: '0', model: 'virtio-scsi' });
}

/** Data disk i is vd<b + i>; vda stays the virtio root disk's, even when the root disk is SCSI. */
export const MAX_DATA_DISKS = 8;
export const DATA_DISK_SERIAL = /^[A-Za-z0-9_-]{1,20}$/;

export function dataDiskTarget(index: number): string {
  return `vd${String.fromCharCode('b'.charCodeAt(0) + index)}`;
}

/**
 * A block device as a virtio disk: raw, no host page cache (cache='none' = O_DIRECT, which
 * io='native' needs), so a guest's flush reaches the device itself. libvirt places it (a warm
 * domain's data disks are plugged through QMP instead: src/container/warm/adopt.ts).
 */
function addDataDisk(devices: XMLBuilder, disk: DataDisk, index: number): void {
  if (disk.imageFormat !== undefined) {
    // An image volume: the store's blob, shared by every VM using it, read-only (qcow2 or raw).
    const el = add(devices, 'disk', { type: 'file', device: 'disk' });
    add(el, 'driver', { name: 'qemu', type: disk.imageFormat });
    add(el, 'source', { file: disk.path });
    add(el, 'target', { dev: dataDiskTarget(index), bus: 'virtio' });
    text(add(el, 'serial'), disk.serial);
    add(el, 'readonly');
    return;
  }
  const el = add(devices, 'disk', { type: 'block', device: 'disk' });
  add(el, 'driver', { name: 'qemu', type: 'raw', cache: 'none', io: 'native' });
  add(el, 'source', { dev: disk.path });
  add(el, 'target', { dev: dataDiskTarget(index), bus: 'virtio' });
  text(add(el, 'serial'), disk.serial);
  if (disk.readOnly) add(el, 'readonly');
}

function validateDataDisks(disks: readonly DataDisk[]): void {
  check(disks.length <= MAX_DATA_DISKS, 'number of data disks', String(disks.length));
  const serials = new Set<string>();
  const paths = new Set<string>();
  for (const disk of disks) {
    checkPath('data disk path', disk.path);
    if (disk.imageFormat === undefined) check(disk.path.startsWith('/dev/'), 'data disk path (not under /dev)', disk.path);
    else {
      check(disk.imageFormat === 'qcow2' || disk.imageFormat === 'raw', 'image volume format', String(disk.imageFormat));
      check(disk.readOnly === true, 'image volume readOnly (image volumes are read-only)', String(disk.readOnly));
      check(!disk.path.startsWith('/dev/'), 'image volume path (a store blob, not a device)', disk.path);
    }
    check(!paths.has(disk.path), 'data disk path (duplicate)', disk.path);
    paths.add(disk.path);
    check(DATA_DISK_SERIAL.test(disk.serial) && !serials.has(disk.serial), 'data disk serial', disk.serial);
    serials.add(disk.serial);
    check(typeof disk.readOnly === 'boolean', 'data disk readOnly', String(disk.readOnly));
  }
}

/**
 * Shares sit on the q35 root bus at fixed slots (SHARE_SLOT + i), like vmlet's NICs (0x10-0x17,
 * see docs/vmwrapper.md): a share without an address would take the first free root port, which
 * a warm domain keeps for its hot-plugged disk and NICs. The daemon is QEMU 7.2's C virtiofsd
 * (Debian 12 has no virtiofsd package); libvirt runs it as root with --fd and
 * `-o source=DIR` (sandbox=namespace, its default: it pivots into DIR, symlinks cannot leave it).
 */
const SHARE_SLOT = 0x18;
export const MAX_SHARES = 4;
export const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';
const SHARE_TAG = /^[A-Za-z0-9_-]{1,31}$/;

function addShare(devices: XMLBuilder, share: Share, index: number): void {
  const el = add(devices, 'filesystem', { type: 'mount', accessmode: 'passthrough' });
  add(el, 'driver', { type: 'virtiofs', queue: '1024' });
  add(el, 'binary', { path: VIRTIOFSD });
  add(el, 'source', { dir: share.source });
  add(el, 'target', { dir: share.tag });
  add(el, 'address', { type: 'pci', domain: '0x0000', bus: '0x00', slot: `0x${(SHARE_SLOT + index).toString(16)}`, function: '0x0' });
}

function addNic(devices: XMLBuilder, nic: VmNic): void {
  switch (nic.kind) {
    case 'tap': {
      const el = add(devices, 'interface', { type: 'ethernet' });
      add(el, 'mac', { address: nic.mac.toLowerCase() });
      add(el, 'target', { dev: nic.tap, managed: 'no' });
      add(el, 'model', { type: 'virtio' });
      add(el, 'mtu', { size: String(nic.mtu) });
      add(el, 'rom', { enabled: 'no' });
      return;
    }
    case 'sriov': {
      // A plain VFIO hostdev: the VF keeps the MAC and VLAN netd set on it through the PF.
      const m = PCI_ADDRESS.exec(nic.pciAddress.toLowerCase());
      if (!m) throw new InvalidArgumentError(`nic ${nic.ifName}: bad PCI address`); // unreachable after validation
      // managed='no': vmlet binds the VF to vfio-pci itself (netd, before the VM starts) so it can restore
      // the exact driver, MAC and VLAN afterwards; libvirt would bind it back to whatever it guesses.
      const el = add(devices, 'hostdev', { mode: 'subsystem', type: 'pci', managed: 'no' });
      add(el, 'driver', { name: 'vfio' });
      add(add(el, 'source'), 'address', {
        domain: `0x${m[1]}`,
        bus: `0x${m[2]}`,
        slot: `0x${m[3]}`,
        function: `0x${m[4]}`,
      });
      return;
    }
  }
}

function addSerial(devices: XMLBuilder, spec: VmSpec): void {
  const serialConsole = spec.console;
  if (serialConsole.kind === 'file') {
    const serial = add(devices, 'serial', { type: 'file' });
    add(serial, 'source', { path: serialConsole.path, append: 'on' });
    add(serial, 'target', { port: '0' });
  } else if (serialConsole.kind === 'unix') {
    const serial = add(devices, 'serial', { type: 'unix' });
    add(serial, 'source', { mode: 'bind', path: serialConsole.socketPath });
    add(serial, 'log', { file: serialConsole.logPath, append: 'on' });
    add(serial, 'target', { port: '0' });
  } else {
    const serial = add(devices, 'serial', { type: 'pty' });
    if (serialConsole.logPath !== undefined) add(serial, 'log', { file: serialConsole.logPath, append: 'on' });
    add(serial, 'target', { port: '0' });
  }
}

/** Throws InvalidArgumentError naming the first field of `spec` that is unsafe or out of range. */
export function validateVmSpec(spec: VmSpec): void {
  check(DOMAIN_NAME.test(spec.name), 'domain name', spec.name);
  check(UUID.test(spec.uuid.toLowerCase()), 'uuid', spec.uuid);
  check(spec.domainType === 'kvm' || spec.domainType === 'qemu', 'domain type', spec.domainType);
  checkPath('emulator', spec.emulator);
  check(
    Number.isSafeInteger(spec.memoryBytes) && spec.memoryBytes >= 1024 * 1024,
    'memory',
    String(spec.memoryBytes),
  );
  check(Number.isInteger(spec.vcpus) && spec.vcpus >= 1 && spec.vcpus <= 255, 'vcpus', String(spec.vcpus));
  if (spec.cputune) validateCputune(spec.cputune);
  if (spec.cpuMode !== undefined) {
    check(spec.cpuMode === 'host-model' || spec.cpuMode === 'host-passthrough', 'cpu mode', spec.cpuMode);
    // libvirt's TCG domain capabilities offer host-model but not host-passthrough.
    check(!(spec.cpuMode === 'host-passthrough' && spec.domainType === 'qemu'), 'cpu mode for TCG', spec.cpuMode);
  }
  if (spec.rootDisk) {
    checkPath('root disk path', spec.rootDisk.path);
    const root = spec.rootDisk;
    if (root.format === 'raw') {
      check(root.path.startsWith('/dev/'), 'root block device (not under /dev)', root.path);
      check(Number.isSafeInteger(root.slice.offset) && root.slice.offset >= 0 && root.slice.offset % 512 === 0, 'root disk slice offset', String(root.slice.offset));
      check(Number.isSafeInteger(root.slice.size) && root.slice.size > 0 && root.slice.size % 512 === 0, 'root disk slice size', String(root.slice.size));
    } else {
      check(root.format === 'qcow2', 'root disk format', String((root as { format: unknown }).format));
    }
    check(spec.rootDisk.driver === 'virtio' || spec.rootDisk.driver === 'scsi', 'disk driver', spec.rootDisk.driver);
  } else {
    check(spec.warm !== undefined && spec.seed === undefined, 'root disk (only a warm domain, without a seed, has none)', 'absent');
  }
  if (spec.dataDisks) validateDataDisks(spec.dataDisks);
  if (spec.warm) check(intIn(spec.warm.hotplugPorts, 1, 16), 'warm hotplug ports', String(spec.warm.hotplugPorts));
  if (spec.seed) {
    checkPath('seed path', spec.seed.path);
    check(spec.seed.kind === 'nocloud' || spec.seed.kind === 'configdrive', 'seed kind', spec.seed.kind);
  }
  if (spec.console.kind === 'file') checkPath('console path', spec.console.path);
  else if (spec.console.kind === 'unix') {
    checkSocketPath('console socket path', spec.console.socketPath);
    checkPath('console log path', spec.console.logPath);
  }
  else if (spec.console.logPath !== undefined) checkPath('console log path', spec.console.logPath);
  else check(spec.console.kind === 'pty', 'console kind', (spec.console as { kind: string }).kind);

  const shares = spec.shares ?? [];
  check(shares.length <= MAX_SHARES, 'number of shares', String(shares.length));
  const tags = new Set<string>();
  for (const share of shares) {
    check(SHARE_TAG.test(share.tag) && !tags.has(share.tag), 'share tag', share.tag);
    tags.add(share.tag);
    checkPath(`share ${share.tag} source`, share.source);
  }

  if (spec.guestAgentSocket !== undefined) checkSocketPath('guest agent socket path', spec.guestAgentSocket);

  const macs = new Set<string>();
  const taps = new Set<string>();
  const pcis = new Set<string>();
  for (const nic of spec.nics) {
    check(IFNAME.test(nic.ifName), 'nic interface name', nic.ifName);
    const label = `nic ${nic.ifName}`;
    const mac = nic.mac.toLowerCase();
    check(MAC.test(mac), `${label} mac`, nic.mac);
    // libvirt refuses multicast MACs (low bit of the first octet).
    check((parseInt(mac.slice(0, 2), 16) & 1) === 0, `${label} mac (multicast)`, nic.mac);
    check(!macs.has(mac), `${label} mac (duplicate)`, nic.mac);
    macs.add(mac);
    if (nic.kind === 'tap') {
      check(IFNAME.test(nic.tap), `${label} tap`, nic.tap);
      check(!taps.has(nic.tap), `${label} tap (duplicate)`, nic.tap);
      taps.add(nic.tap);
      check(intIn(nic.mtu, 68, 65535), `${label} mtu`, String(nic.mtu));
    } else if (nic.kind === 'sriov') {
      const m = PCI_ADDRESS.exec(nic.pciAddress.toLowerCase());
      check(m !== null && parseInt(m[3]!, 16) <= 0x1f, `${label} PCI address`, nic.pciAddress);
      const pci = nic.pciAddress.toLowerCase();
      check(!pcis.has(pci), `${label} PCI address (duplicate)`, nic.pciAddress);
      pcis.add(pci);
    } else {
      check(false, `${label} kind`, (nic as { kind: string }).kind);
    }
  }

  for (const arg of spec.emulatorArgs ?? []) {
    check(!UNSAFE_TEXT.test(arg) && arg.length > 0 && arg.length <= 4096, 'emulator argument', arg);
  }
  for (const env of spec.emulatorEnv) {
    check(ENV_NAME.test(env.name), 'emulator env name', env.name);
    check(!UNSAFE_TEXT.test(env.value) && env.value.length <= 65536, `emulator env ${env.name} value`, env.value);
  }
  check(VMLET_ID.test(spec.metadata.sandboxId), 'sandbox id', spec.metadata.sandboxId);
  if (spec.metadata.owner !== undefined) check(VMLET_ID.test(spec.metadata.owner), 'owner id', spec.metadata.owner);
  check(VMLET_ID.test(spec.metadata.containerId), 'container id', spec.metadata.containerId);
  if (spec.memballoon !== undefined) {
    check(spec.memballoon === 'none' || spec.memballoon === 'virtio', 'memballoon', spec.memballoon);
  }
}

/** Throws InvalidArgumentError when a cputune value is outside what libvirt accepts. */
export function validateCputune(tune: CpuTune): void {
  if (tune.shares !== undefined) check(intIn(tune.shares, 2, 262144), 'cpu shares', String(tune.shares));
  if (tune.period !== undefined) check(intIn(tune.period, 1000, 1000000), 'cpu period', String(tune.period));
  if (tune.quota !== undefined) check(tune.quota === -1 || intIn(tune.quota, 1000, 17592186044415), 'cpu quota', String(tune.quota));
}

function intIn(n: number, min: number, max: number): boolean {
  return Number.isSafeInteger(n) && n >= min && n <= max;
}

/** Absolute, already-normalized host path without control characters. */
function checkPath(what: string, path: string): void {
  check(
    typeof path === 'string' &&
      path.length > 0 &&
      path.length <= MAX_PATH &&
      !UNSAFE_TEXT.test(path) &&
      isAbsolute(path) &&
      normalize(path) === path &&
      !path.endsWith('/'),
    what,
    path,
  );
}

/** A unix socket path: sun_path holds 107 bytes plus the NUL. */
function checkSocketPath(what: string, path: string): void {
  checkPath(what, path);
  check(Buffer.byteLength(path) <= 107, `${what} (over 107 bytes)`, path);
}

function check(ok: boolean, what: string, value: string): void {
  if (!ok) throw new InvalidArgumentError(`invalid ${what} for domain XML: ${JSON.stringify(value)}`);
}
