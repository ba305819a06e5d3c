/**
 * Real namespaces for the DHCP integration tests: a "sandbox" netns with a bridge, as netd builds
 * it, and a "client" netns standing in for the VM, joined by a veth whose sandbox end is a bridge
 * port. Nothing gets an address; only the limited-broadcast route the server needs is added.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export async function ip(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('ip', args, { timeout: 10_000 });
  return stdout;
}

export interface Topology {
  tag: string;
  sandboxNs: string;
  clientNs: string;
  sandboxNetnsPath: string;
  clientNetnsPath: string;
  bridge: string;
  clientIf: string;
  setClientMac(mac: string): Promise<void>;
  /** Lets the client netns send to 255.255.255.255 too (for tests that speak DHCP from a socket). */
  addClientBroadcastRoute(): Promise<void>;
  destroy(): Promise<void>;
}

/** Every name carries "vt" plus a random tag, so leftovers are recognisable and runs never collide. */
export async function createTopology(clientMac: string): Promise<Topology> {
  const tag = randomBytes(3).toString('hex');
  const sandboxNs = `vt-${tag}-sandbox`;
  const clientNs = `vt-${tag}-client`;
  const bridge = `vt-${tag}`;
  const sandboxIf = `vt${tag}s`;
  const clientIf = `vt${tag}c`;
  const topology: Topology = {
    tag,
    sandboxNs,
    clientNs,
    sandboxNetnsPath: `/run/netns/${sandboxNs}`,
    clientNetnsPath: `/run/netns/${clientNs}`,
    bridge,
    clientIf,
    async setClientMac(mac) {
      await ip('-n', clientNs, 'link', 'set', clientIf, 'down');
      await ip('-n', clientNs, 'link', 'set', clientIf, 'address', mac);
      await ip('-n', clientNs, 'link', 'set', clientIf, 'up');
    },
    async addClientBroadcastRoute() {
      await ip('-n', clientNs, 'route', 'add', '255.255.255.255/32', 'dev', clientIf);
    },
    async destroy() {
      // Deleting a namespace takes its bridge and veth end with it; the peer goes with its pair.
      for (const ns of [clientNs, sandboxNs]) {
        await ip('netns', 'delete', ns).catch(() => undefined);
      }
    },
  };
  try {
    await ip('netns', 'add', sandboxNs);
    await ip('netns', 'add', clientNs);
    await ip('-n', sandboxNs, 'link', 'set', 'lo', 'up');
    await ip('-n', clientNs, 'link', 'set', 'lo', 'up');
    await ip('-n', sandboxNs, 'link', 'add', bridge, 'type', 'bridge');
    await ip('-n', sandboxNs, 'link', 'add', sandboxIf, 'type', 'veth', 'peer', 'name', clientIf, 'netns', clientNs);
    await ip('-n', sandboxNs, 'link', 'set', sandboxIf, 'master', bridge);
    await ip('-n', sandboxNs, 'link', 'set', sandboxIf, 'up');
    await ip('-n', sandboxNs, 'link', 'set', bridge, 'up');
    await ip('-n', clientNs, 'link', 'set', clientIf, 'address', clientMac);
    await ip('-n', clientNs, 'link', 'set', clientIf, 'up');
    // Without it, replies to 255.255.255.255 fail with ENETUNREACH in an address-less namespace.
    await ip('-n', sandboxNs, 'route', 'add', '255.255.255.255/32', 'dev', bridge);
  } catch (err) {
    await topology.destroy();
    throw err;
  }
  return topology;
}

/** What is left on the host of the topology `tag`: namespaces and host-side links. */
export async function leftovers(tag: string): Promise<string[]> {
  const found: string[] = [];
  for (const line of (await ip('netns', 'list')).split('\n')) {
    if (line.includes(tag)) found.push(`netns ${line.trim()}`);
  }
  for (const line of (await ip('-o', 'link', 'show')).split('\n')) {
    if (line.includes(tag)) found.push(`link ${line.trim()}`);
  }
  return found;
}

/** Child processes of this test process that the DHCP code or the tests started and left running. */
export function strayChildren(): string[] {
  const stray: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== process.pid) continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (/nsenter|udhcpc/.test(cmdline)) stray.push(`${entry}: ${cmdline}`);
    } catch {
      // the process ended while we looked
    }
  }
  return stray;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion with a deadline; the process is killed by pid if it overstays. */
export function run(
  command: string,
  args: string[],
  options: { timeoutMs: number; env?: NodeJS.ProcessEnv; track: Set<ChildProcess> },
): Promise<RunResult> {
  const { timeoutMs, env, track } = options;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    track.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      track.delete(child);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      track.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
