/** Helpers for network integration tests: real namespaces, real iproute2 and nft, all cleaned up. */
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { runTool, ToolFailedError } from '../../../src/network/iproute.js';
import { ExecNftRunner } from '../../../src/network/isolation.js';
import { NetnsManager } from '../../../src/network/netns.js';

const execFileAsync = promisify(execFile);

export const TEST_NETNS_PREFIX = 'vmlet-test-';

/** A random tag for one test's namespaces and a random /24 inside 198.18.0.0/15. */
export function testIds(): { tag: string; net: string } {
  const bytes = randomBytes(4);
  return { tag: bytes.subarray(0, 3).toString('hex'), net: `198.${18 + (bytes[3]! & 1)}.${bytes[3]! >> 1}` };
}

/** Runs `ip ARGS` (in `netns` when given) and returns stdout. */
export async function ip(netns: string | undefined, ...args: string[]): Promise<string> {
  const full = netns ? ['-n', netns, ...args] : args;
  return (await runTool('ip', full, { timeoutMs: 10_000 })).stdout;
}

export async function ipJson(netns: string | undefined, ...args: string[]): Promise<Record<string, any>[]> {
  return JSON.parse(await ip(netns, '-j', '-d', ...args)) as Record<string, any>[];
}

/** Runs a command inside `netns` (ip netns exec) and resolves with its exit code. */
export async function inNetns(netns: string, file: string, args: string[], timeoutMs = 15_000): Promise<number> {
  try {
    await runTool('ip', ['netns', 'exec', netns, file, ...args], { timeoutMs });
    return 0;
  } catch (err) {
    if (err instanceof ToolFailedError && err.exitCode !== null) return err.exitCode;
    throw err;
  }
}

/** One DHCP DISCOVER (busybox udhcpc, raw socket, 0.0.0.0 → 255.255.255.255:67) out of `dev`. */
export async function sendDhcpDiscover(netns: string, dev: string): Promise<void> {
  // It gets no answer and exits non-zero after about a second; only the packet on the wire matters.
  await inNetns(netns, 'busybox', ['udhcpc', '-i', dev, '-n', '-q', '-t', '1', '-T', '1', '-s', '/bin/true']);
}

/** UDP datagrams from a socket inside `netns` to `address` on each of `ports` (broadcast allowed). */
export async function sendUdp(netns: string, address: string, ports: number[]): Promise<void> {
  const script =
    "const s=require('node:dgram').createSocket('udp4');" +
    's.bind(()=>{s.setBroadcast(true);let n=0;const ports=JSON.parse(process.argv[2]);' +
    "for(const p of ports)s.send('vmlet-test',p,process.argv[1],(e)=>{if(e)throw e;if(++n===ports.length)s.close();});});";
  const code = await inNetns(netns, process.execPath, ['-e', script, address, JSON.stringify(ports)]);
  if (code !== 0) throw new Error(`sending UDP from ${netns} failed with exit ${code}`);
}

const nft = new ExecNftRunner();
const COUNT_TABLE = 'vmlet-test-count';

/**
 * Counts UDP datagrams to port 67 ("dhcp") and 1067 ("control") arriving on `dev` in `netns` from
 * elsewhere: a host's own broadcasts are looped back through the ingress of the sending device,
 * so frames with the device's own source MAC are not counted.
 */
export async function installCounters(netns: string, dev: string): Promise<void> {
  const [link] = JSON.parse(await ip(netns, '-j', 'link', 'show', 'dev', dev)) as { address: string }[];
  const notOwn = `ether saddr != ${link!.address}`;
  await nft.apply(
    netns,
    [
      `table netdev ${COUNT_TABLE} {`,
      '\tchain ingress {',
      `\t\ttype filter hook ingress device "${dev}" priority 0; policy accept;`,
      `\t\t${notOwn} udp dport 67 counter comment "dhcp"`,
      `\t\t${notOwn} udp dport 1067 counter comment "control"`,
      '\t}',
      '}',
      '',
    ].join('\n'),
  );
}

export async function readCounters(netns: string): Promise<{ dhcp: number; control: number }> {
  const listing = (await nft.listTable(netns, 'netdev', COUNT_TABLE)) as { nftables: any[] };
  const out = { dhcp: -1, control: -1 };
  for (const item of listing.nftables) {
    const rule = item.rule;
    if (!rule) continue;
    const counter = rule.expr.find((e: any) => e.counter)?.counter;
    if (rule.comment === 'dhcp' || rule.comment === 'control') out[rule.comment as 'dhcp' | 'control'] = counter.packets;
  }
  return out;
}

/** Namespaces a test made, deleted in `cleanup` whatever happened. */
export class TestNamespaces {
  readonly manager = new NetnsManager();
  private readonly made: string[] = [];

  constructor(readonly tag: string) {}

  name(role: string): string {
    return `${TEST_NETNS_PREFIX}${this.tag}-${role}`;
  }

  async create(role: string): Promise<string> {
    const name = this.name(role);
    this.made.push(name);
    await this.manager.create(name);
    return name;
  }

  async cleanup(): Promise<void> {
    for (const name of this.made.reverse()) await this.manager.delete(name);
  }

  /** Namespaces of this test that still exist. */
  async leftovers(): Promise<string[]> {
    return (await this.manager.list()).filter((n) => n.startsWith(`${TEST_NETNS_PREFIX}${this.tag}`));
  }
}

/** Names of the links in the host namespace. */
export async function hostLinkNames(): Promise<string[]> {
  const { stdout } = await execFileAsync('ip', ['-j', 'link', 'show']);
  return (JSON.parse(stdout) as { ifname: string }[]).map((l) => l.ifname);
}
