/**
 * A fake host for netd's NetworkManager: namespaces, the links in them, nft, CNI plugins and DHCP
 * responders, all in memory and all writing one call log (netns / cni / ip / nft / dhcp lines in
 * the order the manager made the calls) that the flow tests compare with golden files. The links
 * are modelled just enough for the tap binding: CNI ADD puts a veth eth0 in the netns, the `ip`
 * batches add, change and delete bridges and TAPs, and `ip -j` answers from that model.
 */
import { AlreadyExistsError, NotFoundError } from '../../../src/errors.js';
import { formatBatch, type IpCommand } from '../../../src/network/iproute.js';
import { NETNS_RUN_DIR, type NetnsOps } from '../../../src/network/netns.js';
import { snapshotCommands } from '../../../src/network/bindings/snapshot.js';
import type { PluginRequest } from '../../../src/network/cni/exec.js';
import type { DhcpResponderFactory } from '../../../src/netd/dhcp_responders.js';
import type { NetdSideEffects } from '../../../src/netd/manager.js';
import type { SysctlRunner } from '../../../src/network/sysctl.js';
import { FakeIpRunner, FakeNftRunner, FakePluginRunner } from '../network/fakes.js';

interface FakeLink {
  ifname: string;
  kind: 'veth' | 'bridge' | 'tun';
  mac: string;
  mtu: number;
  up: boolean;
  group: number;
  master?: string;
  /** The pod address CNI gave a veth (198.18.110.x/24). */
  address?: string;
  /** Calico's shape: the address is a /32 routed through 169.254.1.1 (plugin type "calico"). */
  calico?: true;
}

/** The pod subnet of the fake CNI network; the gateway is .1. */
const DEFAULT_SUBNET = '198.18.110';

function nameOfPath(path: string): string {
  return path.slice(NETNS_RUN_DIR.length + 1);
}

export class FakeHost {
  readonly log: string[] = [];
  /** netns name → its links (lo is implied). */
  readonly namespaces = new Map<string, FakeLink[]>();
  readonly dhcpRunning = new Set<string>();
  readonly ip = new FakeIpRunner();
  readonly nft = new FakeNftRunner();
  readonly cni = new FakePluginRunner();
  /** Each netns's sysctls (netns-wide ones start as a new netns has them). */
  readonly sysctls = new Map<string, Record<string, string>>();
  readonly sysctl: SysctlRunner = {
    read: async (netns, keys) => {
      this.log.push(`sysctl ${netns}: read ${keys.join(' ')}`);
      this.linksOf(netns);
      const values = this.sysctls.get(netns) ?? {};
      return Object.fromEntries(keys.map((k) => [k, values[k] ?? (k.endsWith('.forwarding') ? '0' : '1')]));
    },
    write: async (netns, values) => {
      this.log.push(`sysctl ${netns}: write ${Object.entries(values).map(([k, v]) => `${k}=${v}`).join(' ')}`);
      this.linksOf(netns);
      this.sysctls.set(netns, { ...this.sysctls.get(netns), ...values });
    },
  };
  /** Awaited before an ip batch runs: reject to fail it before it starts, or never settle to stall it. */
  beforeIpApply: (netns: string, commands: readonly IpCommand[]) => void | Promise<void> = () => undefined;
  /** An error for the one command of a batch that fails: like `ip -batch`, the commands before it stay done. */
  failIpCommand: (netns: string, command: IpCommand) => Error | undefined = () => undefined;
  private nextHost = 2;
  private nextWarm = 1;

  readonly netns: NetnsOps = {
    exists: async (name) => this.namespaces.has(name),
    create: async (name) => {
      this.log.push(`netns create ${name}`);
      if (this.namespaces.has(name)) throw new AlreadyExistsError(`netns ${name} already exists`);
      this.namespaces.set(name, []);
      return `${NETNS_RUN_DIR}/${name}`;
    },
    delete: async (name) => {
      this.log.push(`netns delete ${name}`);
      this.namespaces.delete(name);
    },
    list: async () => [...this.namespaces.keys()].sort(),
  };

  readonly startDhcp: DhcpResponderFactory = async (netnsPath, leases) => {
    this.log.push(`dhcp start ${netnsPath}: ${leases.map((l) => `${l.mac} ${l.ip}/${l.prefixLength} via ${l.gateway ?? '-'}`).join(', ')}`);
    if (!this.namespaces.has(nameOfPath(netnsPath))) throw new NotFoundError(`network namespace ${netnsPath} is not there`);
    this.dhcpRunning.add(netnsPath);
    return {
      stats: () => ({ offers: 0, acks: 0, naks: 0, ignored: 0, malformed: 0, releases: 0, declines: 0, sendErrors: 0 }),
      close: async () => {
        this.log.push(`dhcp stop ${netnsPath}`);
        this.dhcpRunning.delete(netnsPath);
      },
    };
  };

  constructor() {
    this.ip.onShow = (commands, netns) => this.show(netns, commands);
    this.ip.onApply = async (commands, netns) => {
      this.log.push(`ip apply ${netns}:\n${formatBatch(commands).replace(/^/gm, '  ').trimEnd()}`);
      this.linksOf(netns);
      await this.beforeIpApply(netns, commands);
      for (const command of commands) {
        const failure = this.failIpCommand(netns, command);
        if (failure) throw failure;
        this.applyOne(netns, command);
      }
    };
    this.nft.onApply = (script, netns) => {
      const table = /^add table (\S+ \S+)$/m.exec(script)?.[1];
      this.log.push(`nft ${netns}: ${/^delete table/m.test(script) ? 'remove' : 'install'} ${table}`);
      this.linksOf(netns);
    };
    this.cni.onCall = (req) => this.log.push(`cni ${req.command} ${req.pluginType} ${req.containerId} ${req.netns || '(no netns)'} ${req.ifName}`);
    this.cni.output = (req) => this.plugin(req);
  }

  /** What NetworkManager takes: every side effect of netd, here. */
  sideEffects(): Partial<NetdSideEffects> {
    return {
      netns: this.netns,
      ip: this.ip,
      nft: this.nft,
      cniPlugins: this.cni,
      netnsPathExists: async (path) => path.startsWith(`${NETNS_RUN_DIR}/`) && this.namespaces.has(nameOfPath(path)),
      startDhcp: this.startDhcp,
      sysctl: this.sysctl,
      warmNetnsName: () => `vmlet-warm-${String(this.nextWarm++).padStart(16, '0')}`,
      ownerId: '0000000000000000',
      // TAPs without owner in the goldens; the owner's command is tested in bindings/tap.test.ts.
      qemuUser: null,
    };
  }

  /** The log from index `from` on, one call per line. */
  text(from = 0): string {
    return `${this.log.slice(from).join('\n')}\n`;
  }

  /** Starts a titled part of the log; returns where it starts. */
  section(title: string): number {
    this.log.push(`# ${title}`);
    return this.log.length - 1;
  }

  /** A link something other than netd made (a CNI plugin that leaves one behind). */
  addLink(netns: string, ifname: string): void {
    this.linksOf(netns).push({ ifname, kind: 'veth', mac: '02:00:00:00:00:99', mtu: 1500, up: false, group: 0 });
  }

  /** Each netns and its links (for "nothing left" checks). */
  describe(): string[] {
    return [...this.namespaces].map(([name, links]) => `${name}: ${links.map((l) => `${l.ifname}${l.master ? `@${l.master}` : ''}${l.up ? '' : '(down)'}`).join(' ')}`);
  }

  private linksOf(netns: string): FakeLink[] {
    const links = this.namespaces.get(netns);
    if (!links) throw new NotFoundError(`in netns ${netns}: Cannot open network namespace "${netns}": No such file or directory`);
    return links;
  }

  private plugin(req: PluginRequest): unknown {
    if (req.command !== 'ADD') {
      if (req.command === 'DEL' && req.pluginType === 'bridge' && req.netns) {
        const links = this.namespaces.get(nameOfPath(req.netns));
        if (links) this.namespaces.set(nameOfPath(req.netns), links.filter((l) => l.ifname !== req.ifName));
      }
      return undefined;
    }
    if (req.pluginType === 'calico') {
      const host = this.nextHost++;
      const mac = `0a:58:c6:12:d6:${host.toString(16).padStart(2, '0')}`;
      const address = `198.18.214.${host}`;
      this.linksOf(nameOfPath(req.netns)).push({ ifname: req.ifName, kind: 'veth', mac, mtu: 1440, up: true, group: 0, address: `${address}/32`, calico: true });
      return {
        cniVersion: req.config.cniVersion,
        interfaces: [{ name: `cali${host}`, mac: 'ee:ee:ee:ee:ee:ee' }, { name: req.ifName, mac, sandbox: req.netns }],
        ips: [{ address: `${address}/32`, gateway: '169.254.1.1', interface: 1 }],
        routes: [{ dst: '0.0.0.0/0' }],
      };
    }
    if (req.pluginType !== 'bridge') return { ...(req.config.prevResult as object) };
    // The network's own /24 when its IPAM names one (a second network), else the fake pod subnet.
    const ipamSubnet = (req.config.ipam as { subnet?: string } | undefined)?.subnet;
    const SUBNET = ipamSubnet ? ipamSubnet.split('.').slice(0, 3).join('.') : DEFAULT_SUBNET;
    const host = this.nextHost++;
    const mac = `0a:58:c6:12:6e:${host.toString(16).padStart(2, '0')}`;
    this.linksOf(nameOfPath(req.netns)).push({ ifname: req.ifName, kind: 'veth', mac, mtu: 1450, up: true, group: 0, address: `${SUBNET}.${host}/24` });
    return {
      cniVersion: req.config.cniVersion,
      interfaces: [{ name: req.ifName, mac, sandbox: req.netns }],
      ips: [{ address: `${SUBNET}.${host}/24`, gateway: `${SUBNET}.1`, interface: 0 }],
      routes: [{ dst: '0.0.0.0/0', gw: `${SUBNET}.1` }],
      dns: { nameservers: [`${SUBNET}.1`], search: ['cluster.local'] },
    };
  }

  private show(netns: string, commands: readonly IpCommand[]): unknown[] {
    this.log.push(`ip show ${netns}: ${commands.map((c) => c.join(' ')).join('; ')}`);
    const links = this.linksOf(netns);
    const linkDocs = links.map((l) => ({
      ifname: l.ifname,
      flags: l.up ? ['BROADCAST', 'MULTICAST', 'UP'] : ['BROADCAST', 'MULTICAST'],
      mtu: l.mtu,
      group: l.group === 0 ? 'default' : String(l.group),
      link_type: 'ether',
      address: l.mac,
      linkinfo: { info_kind: l.kind },
      inet6_addr_gen_mode: 'eui64',
      ...(l.master ? { master: l.master } : {}),
    }));
    const ifname = commands[0]?.[3];
    if (ifname !== undefined && JSON.stringify(commands) === JSON.stringify(snapshotCommands(ifname))) {
      const dev = links.find((l) => l.ifname === ifname);
      if (!dev) throw new NotFoundError(`in netns ${netns}: Device "${ifname}" does not exist.`);
      const [local, prefix] = dev.address!.split('/');
      const SUBNET = local!.split('.').slice(0, 3).join('.');
      const addr = [{ ifname, addr_info: [{ family: 'inet', local, prefixlen: Number(prefix), scope: 'global', label: ifname }] }];
      const routes4 = dev.calico
        ? [
            { type: 'unicast', dst: 'default', gateway: '169.254.1.1', table: 'main', protocol: 'boot', scope: 'global', flags: [] },
            { type: 'unicast', dst: '169.254.1.1', table: 'main', protocol: 'boot', scope: 'link', flags: [] },
          ]
        : [
            { type: 'unicast', dst: 'default', gateway: `${SUBNET}.1`, table: 'main', protocol: 'boot', scope: 'global', flags: [] },
            { type: 'unicast', dst: `${SUBNET}.0/24`, table: 'main', protocol: 'kernel', scope: 'link', prefsrc: local, flags: [] },
          ];
      return [addr, routes4, [], linkDocs];
    }
    return commands.map(() => linkDocs);
  }

  /** The part of one `ip` command the link model cares about; addresses, routes and neighbours are not modelled. */
  private applyOne(netns: string, command: IpCommand): void {
    const links = this.linksOf(netns);
    const arg = (key: string) => {
      const i = command.indexOf(key);
      return i >= 0 ? command[i + 1] : undefined;
    };
    const [object, verb] = command;
    if (object === 'link' && verb === 'add' && command.includes('bridge')) {
      links.push({ ifname: arg('name')!, kind: 'bridge', mac: arg('address') ?? '02:00:00:00:00:00', mtu: Number(arg('mtu') ?? 1500), up: false, group: Number(arg('group') ?? 0) });
    } else if (object === 'tuntap' && verb === 'add') {
      links.push({ ifname: arg('dev')!, kind: 'tun', mac: '02:00:00:00:00:01', mtu: 1500, up: false, group: 0 });
    } else if (object === 'link' && verb === 'delete') {
      const gone = links.filter((l) => (command[2] === 'group' ? l.group === Number(command[3]) : l.ifname === command[3]));
      const kept = links.filter((l) => !gone.includes(l));
      for (const l of kept) if (gone.some((g) => g.ifname === l.master)) delete l.master;
      this.namespaces.set(netns, kept);
    } else if (object === 'link' && verb === 'set') {
      const link = links.find((l) => l.ifname === arg('dev'));
      if (!link) throw new NotFoundError(`in netns ${netns}: Cannot find device "${arg('dev')}"`);
      if (arg('address')) link.mac = arg('address')!;
      if (arg('group')) link.group = Number(arg('group'));
      if (arg('mtu')) link.mtu = Number(arg('mtu'));
      if (arg('master')) link.master = arg('master');
      if (command.includes('up')) link.up = true;
      if (command.includes('down')) link.up = false;
    }
  }
}
