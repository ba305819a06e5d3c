/** Real-system helpers for the CNI integration tests: netns, links, leases, nat rules. */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export const SYSTEM_PLUGIN_DIR = '/usr/lib/cni';
export const TEST_PLUGIN_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'fixtures', 'cni', 'plugins');
export const BIN_DIRS = `${SYSTEM_PLUGIN_DIR}:${TEST_PLUGIN_DIR}`;

/** Why the suite cannot run here, or undefined when it can. */
export function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  if (!existsSync(join(SYSTEM_PLUGIN_DIR, 'bridge'))) return `no CNI plugins in ${SYSTEM_PLUGIN_DIR}`;
  return undefined;
}

type WithAfter = { after: (fn: () => Promise<void> | void) => void };

export async function run(cmd: string, args: string[]): Promise<string> {
  const { stdout } = await execFileP(cmd, args, { encoding: 'utf8' });
  return stdout;
}

/** Short random hex, to keep names of parallel runs apart. */
export function uid(bytes = 3): string {
  return randomBytes(bytes).toString('hex');
}

export interface TestNetns {
  name: string;
  path: string;
}

/** A fresh netns `vmlet-test-…`, deleted after the test whatever happens. */
export async function createNetns(t: WithAfter, label: string): Promise<TestNetns> {
  const name = `vmlet-test-${label}-${uid()}`;
  await run('ip', ['netns', 'add', name]);
  t.after(() => deleteNetns(name));
  return { name, path: `/run/netns/${name}` };
}

export async function deleteNetns(name: string): Promise<void> {
  await run('ip', ['netns', 'del', name]).catch(() => {});
}

export async function netnsNames(): Promise<string[]> {
  const out = await run('ip', ['-j', 'netns', 'list']);
  return out.trim() === '' ? [] : (JSON.parse(out) as { name: string }[]).map((n) => n.name);
}

export interface LinkInfo {
  ifname: string;
  address: string;
  mtu: number;
  operstate: string;
}

/** The link `name` in the host or in `netns`, undefined when there is none. */
export async function link(name: string, netns?: string): Promise<LinkInfo | undefined> {
  const args = [...(netns ? ['-n', netns] : []), '-j', 'link', 'show', 'dev', name];
  try {
    return (JSON.parse(await run('ip', args)) as LinkInfo[])[0];
  } catch {
    return undefined;
  }
}

export async function addresses(dev: string, netns?: string): Promise<string[]> {
  const args = [...(netns ? ['-n', netns] : []), '-j', 'addr', 'show', 'dev', dev];
  const out = JSON.parse(await run('ip', args)) as { addr_info: { local: string; prefixlen: number; family: string }[] }[];
  return out[0]!.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
}

export async function routes(netns?: string): Promise<{ dst: string; gateway?: string; dev: string }[]> {
  const args = [...(netns ? ['-n', netns] : []), '-j', 'route', 'show'];
  return JSON.parse(await run('ip', args)) as { dst: string; gateway?: string; dev: string }[];
}

/** Removes a host link (a bridge the bridge plugin made and never deletes) after the test. */
export function deleteLinkAfter(t: WithAfter, name: string): void {
  t.after(() => run('ip', ['link', 'del', 'dev', name]).then(() => {}, () => {}));
}

export async function tempDir(t: WithAfter, label: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `vmlet-cni-${label}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** host-local's lease files for `network` under `dataDir`: one file per address, named by it. */
export async function leaseFiles(dataDir: string, network: string): Promise<string[]> {
  try {
    const names = await readdir(join(dataDir, network));
    return names.filter((n) => isIP(n) !== 0);
  } catch {
    return [];
  }
}

/** A /24 in 198.19.0.0/16 (inside the 198.18.0.0/15 test range) picked at random per test. */
export function testSubnet(): { subnet: string; prefix: string } {
  const octet = 16 + Math.floor(Math.random() * 224);
  return { subnet: `198.19.${octet}.0/24`, prefix: `198.19.${octet}.` };
}

/** `iptables -t nat -S` lines (rules and chains) of the IPv4 nat table. */
export async function natRules(): Promise<string[]> {
  return (await run('iptables', ['-w', '-t', 'nat', '-S'])).split('\n').filter((l) => l !== '');
}

/**
 * portmap leaves its shared scaffolding (CNI-HOSTPORT-* chains and the jumps to them) after the
 * last DEL. When the test's run created it, remove exactly those rules and chains again.
 */
export async function removePortmapScaffolding(): Promise<void> {
  const lines = await natRules();
  for (const line of lines) {
    if (line.startsWith('-A ') && line.includes('CNI-HOSTPORT-') && !line.startsWith('-A CNI-')) {
      await run('iptables', ['-w', '-t', 'nat', ...splitRule(`-D ${line.slice(3)}`)]);
    }
  }
  for (const line of lines) {
    if (line.startsWith('-N CNI-HOSTPORT-')) await run('iptables', ['-w', '-t', 'nat', '-F', line.slice(3)]);
  }
  for (const line of lines) {
    if (line.startsWith('-N CNI-HOSTPORT-')) await run('iptables', ['-w', '-t', 'nat', '-X', line.slice(3)]);
  }
}

/** Splits an iptables -S line into argv, honouring the double quotes it puts around comments. */
function splitRule(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] !== undefined ? m[1].replace(/\\"/g, '"') : m[2]!);
  return out;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** "family name" of every nftables table, e.g. "ip nat". */
export async function nftTables(): Promise<string[]> {
  const out = JSON.parse(await run('nft', ['-j', 'list', 'tables'])) as { nftables: { table?: { family: string; name: string } }[] };
  return out.nftables.flatMap((e) => (e.table ? [`${e.table.family} ${e.table.name}`] : []));
}

/**
 * iptables-nft creates the "ip nat"/"ip6 nat" tables for portmap and never drops them. Deletes
 * those of `tables` that hold no rule (so nothing anyone else put there is touched).
 */
export async function deleteEmptyTables(tables: string[]): Promise<void> {
  for (const table of tables) {
    const [family, name] = table.split(' ') as [string, string];
    let doc: { nftables: Record<string, unknown>[] };
    try {
      doc = JSON.parse(await run('nft', ['-j', 'list', 'table', family, name])) as typeof doc;
    } catch {
      continue;
    }
    if (doc.nftables.some((e) => 'rule' in e)) continue;
    await run('nft', ['delete', 'table', family, name]).catch(() => {});
  }
}
