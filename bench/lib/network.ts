/**
 * The bench's CNI network: a bridge `vbench<tag>` with host-local IPAM in a /24 of 198.19.0.0/16
 * (inside the test range 198.18.0.0/15), gateway on the host bridge, no masquerade and no route
 * beyond 198.18.0.0/15, so nothing a pod sends can leave the machine. Pure builders plus the few
 * host reads, writes and deletes the benchmarks need around it (the VM bench names its bridge
 * `vbvm<tag>`).
 */
import { execFile } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { access, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadNetworkConfig, type NetworkConfigList } from '../../src/network/cni/config.js';
import { findPlugin } from '../../src/network/cni/exec.js';

const execFileP = promisify(execFile);

/** The only range bench pods route to: the test range. */
export const POD_ROUTE = '198.18.0.0/15';

export interface BenchNetwork {
  networkName: string;
  bridge: string;
  subnet: string;
  ipamDataDir: string;
}

/** The conflist both vmlet and the floor use, byte for byte. Pure. */
export function benchConflist(net: BenchNetwork): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: net.networkName,
    plugins: [
      {
        type: 'bridge',
        bridge: net.bridge,
        isGateway: true,
        ipMasq: false,
        ipam: {
          type: 'host-local',
          dataDir: net.ipamDataDir,
          ranges: [[{ subnet: net.subnet }]],
          routes: [{ dst: POD_ROUTE }],
        },
      },
    ],
  };
}

function ipv4ToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new RangeError(`${ip} is not an IPv4 address`);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

/** [first, last] address of a CIDR ("default" is the whole space; a bare address is a /32). Pure. */
export function cidrRange(cidr: string): [number, number] {
  if (cidr === 'default') return [0, 0xffffffff];
  const [ip, lenText] = cidr.split('/');
  const len = lenText === undefined ? 32 : Number(lenText);
  if (!Number.isInteger(len) || len < 0 || len > 32) throw new RangeError(`${cidr} has no valid prefix length`);
  const size = 2 ** (32 - len);
  const first = Math.floor(ipv4ToInt(ip!) / size) * size;
  return [first, first + size - 1];
}

/**
 * A 198.19.x.0/24 no host route in `routeDsts` covers or falls into, except routes that cover all
 * of 198.0.0.0/8 and wider (a default route must not count as a clash). `start` picks where the
 * search begins, so concurrent benches usually differ. Pure.
 */
export function pickBenchSubnet(routeDsts: readonly string[], start: number): string {
  const ranges = routeDsts.flatMap((d) => {
    try {
      const r = cidrRange(d);
      return r[1] - r[0] >= 2 ** 24 - 1 ? [] : [r];
    } catch {
      return [];
    }
  });
  for (let k = 0; k < 256; k++) {
    const x = (start + k) % 256;
    const subnet = `198.19.${x}.0/24`;
    const [a, b] = cidrRange(subnet);
    if (!ranges.some(([c, d]) => c <= b && a <= d)) return subnet;
  }
  throw new Error('every /24 of 198.19.0.0/16 is routed on this host already');
}

/** `subnet` when no host route overlaps it (routes of /8 and wider aside, as pickBenchSubnet). */
export function requireUnrouted(subnet: string, routeDsts: readonly string[]): string {
  const [a, b] = cidrRange(subnet);
  for (const d of routeDsts) {
    let r: [number, number];
    try {
      r = cidrRange(d);
    } catch {
      continue;
    }
    if (r[1] - r[0] < 2 ** 24 - 1 && r[0] <= b && a <= r[1]) throw new Error(`${subnet} overlaps the host route ${d}: pick another --subnet-prefix`);
  }
  return subnet;
}

export async function hostRouteDsts(): Promise<string[]> {
  const { stdout } = await execFileP('ip', ['-j', '-4', 'route', 'show', 'table', 'all']);
  return (JSON.parse(stdout) as { dst?: string }[]).map((r) => r.dst ?? '').filter((d) => d !== '');
}

export async function listNetns(): Promise<string[]> {
  try {
    return await readdir('/run/netns');
  } catch {
    return [];
  }
}

export async function deleteNetns(name: string): Promise<void> {
  await execFileP('ip', ['netns', 'delete', name], { timeout: 10_000 });
}

export async function linkExists(name: string): Promise<boolean> {
  try {
    await execFileP('ip', ['link', 'show', 'dev', name], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** The bridge plugin never deletes its bridge; the bench made it, the bench removes it. */
export async function deleteLink(name: string): Promise<void> {
  if (await linkExists(name)) await execFileP('ip', ['link', 'delete', 'dev', name], { timeout: 10_000 });
}

const CANDIDATE_BIN_DIRS = ['/opt/cni/bin', '/usr/lib/cni'];

/** The CNI plugin directories present on this host; fails unless `bridge` and `host-local` are found. */
export async function cniBinDirs(): Promise<string[]> {
  const dirs: string[] = [];
  for (const d of CANDIDATE_BIN_DIRS) if (await exists(d)) dirs.push(d);
  if (dirs.length === 0) throw new Error(`no CNI plugin directory (${CANDIDATE_BIN_DIRS.join(', ')}); install containernetworking-plugins`);
  for (const plugin of ['bridge', 'host-local']) await findPlugin(plugin, dirs);
  return dirs;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Picks a free /24 (or takes `subnet`, a whole CIDR, or `subnetPrefix`, a /24), writes the bench
 * conflist as `fileName` into `<dir>/cni` (the daemon's
 * `--cni-conf-dir`) and checks that the product's loader accepts it. The bridge is created by the
 * first CNI ADD; the caller deletes it.
 */
export async function setUpBenchNetwork(dir: string, names: { networkName: string; bridge: string; fileName: string; subnetPrefix?: string; subnet?: string }): Promise<{
  network: BenchNetwork;
  cniConfDir: string;
  conflist: Record<string, unknown>;
  config: NetworkConfigList;
}> {
  const network: BenchNetwork = {
    networkName: names.networkName,
    bridge: names.bridge,
    subnet: names.subnet !== undefined ? requireUnrouted(names.subnet, await hostRouteDsts()) : names.subnetPrefix === undefined ? pickBenchSubnet(await hostRouteDsts(), randomInt(256)) : requireUnrouted(`${names.subnetPrefix}.0/24`, await hostRouteDsts()),
    ipamDataDir: join(dir, 'ipam'),
  };
  const cniConfDir = join(dir, 'cni');
  await mkdir(cniConfDir, { recursive: true });
  const conflist = benchConflist(network);
  await writeFile(join(cniConfDir, names.fileName), `${JSON.stringify(conflist, null, 2)}\n`);
  const loaded = await loadNetworkConfig(cniConfDir);
  if (!loaded.ok) throw new Error(`the bench conflist does not load: ${loaded.reason}`);
  return { network, cniConfDir, conflist, config: loaded.config };
}
