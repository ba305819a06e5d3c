/**
 * `vmlet diag SANDBOX|CONTAINER`: one JSON document with what a person debugging a pod needs —
 * the records (read from the state dir, never modified), the pod netns's links, addresses, routes
 * and rules, each VM's domain XML and state, and the last lines of each container log. Read-only;
 * a part that cannot be read is reported as `{ error }` instead of failing the whole document.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Config } from '../config/table.js';
import { errorText } from '../errors.js';

const run = promisify(execFile);
const LOG_LINES = 50;

type Json = Record<string, unknown>;

async function records(dir: string): Promise<Json[]> {
  let names: string[] = [];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.json'));
  } catch {
    return [];
  }
  const out: Json[] = [];
  for (const n of names) {
    try {
      out.push(JSON.parse(await readFile(join(dir, n), 'utf8')) as Json);
    } catch {
      /* a record being rewritten; diag is best effort */
    }
  }
  return out;
}

async function attempt<T>(fn: () => Promise<T>): Promise<T | { error: string }> {
  try {
    return await fn();
  } catch (err) {
    return { error: errorText(err) };
  }
}

async function ipJson(netnsPath: string, args: string[]): Promise<unknown> {
  const { stdout } = await run('nsenter', [`--net=${netnsPath}`, '--', 'ip', '-j', ...args], { timeout: 10_000 });
  return JSON.parse(stdout || '[]');
}

async function tail(path: string, lines: number): Promise<string[]> {
  const text = await readFile(path, 'utf8');
  return text.split('\n').filter(Boolean).slice(-lines);
}

export async function diagnose(config: Config, idOrPrefix: string): Promise<Json> {
  if (!/^[a-f0-9]{1,64}$/.test(idOrPrefix)) throw new Error(`${JSON.stringify(idOrPrefix)} is not a sandbox or container id (hex)`);
  const sandboxes = await records(join(config.stateDir, 'sandboxes'));
  const containers = await records(join(config.stateDir, 'containers'));
  const matches = [...sandboxes, ...containers].filter((r) => String(r.id).startsWith(idOrPrefix));
  if (matches.length === 0) throw new Error(`no sandbox or container ${idOrPrefix} in ${config.stateDir}`);
  if (matches.length > 1) throw new Error(`id prefix ${idOrPrefix} is ambiguous`);
  const hit = matches[0]!;
  const sandbox = sandboxes.includes(hit) ? hit : sandboxes.find((s) => s.id === hit.sandboxId);
  const ofSandbox = sandbox ? containers.filter((c) => c.sandboxId === sandbox.id) : [hit];
  const netnsPath = typeof sandbox?.netnsPath === 'string' ? sandbox.netnsPath : undefined;
  const network = netnsPath
    ? {
      netnsPath,
      links: await attempt(() => ipJson(netnsPath, ['link'])),
      addresses: await attempt(() => ipJson(netnsPath, ['addr'])),
      routes: await attempt(() => ipJson(netnsPath, ['route', 'show', 'table', 'all'])),
      rules: await attempt(() => ipJson(netnsPath, ['rule'])),
    }
    : null;
  const uri = config.libvirtUri;
  const vms = [];
  for (const c of ofSandbox) {
    const domain = String(c.domainName ?? '');
    vms.push({
      containerId: c.id,
      domain,
      state: domain ? await attempt(async () => (await run('virsh', ['-c', uri, 'domstate', domain, '--reason'], { timeout: 15_000 })).stdout.trim()) : null,
      domainXml: domain ? await attempt(async () => (await run('virsh', ['-c', uri, 'dumpxml', domain], { timeout: 15_000, maxBuffer: 16 * 1024 * 1024 })).stdout) : null,
      logTail: typeof c.logPath === 'string' && c.logPath ? await attempt(() => tail(String(c.logPath), LOG_LINES)) : [],
    });
  }
  return { query: idOrPrefix, kind: sandboxes.includes(hit) ? 'sandbox' : 'container', sandbox: sandbox ?? null, containers: ofSandbox, network, vms };
}
