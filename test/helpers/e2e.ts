/** Shared pieces of the VM end-to-end tests: the guest image over HTTP, console log parsing, waiting, cleanup. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, statSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { REPO_ROOT, type TestDaemon } from './daemon.js';

/** Builds (or reuses) the test guest and serves it on 127.0.0.1; returns its URL and the server. */
export async function serveTestGuest(): Promise<{ url: string; server: Server }> {
  const guest = execFileSync(join(REPO_ROOT, 'test-guests', 'build-busybox.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 900_000 }).trim();
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': statSync(guest).size });
    createReadStream(guest).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/test-guest.qcow2`, server };
}

export async function waitFor<T>(what: string, ms: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Parses a CRI container log, asserting every line has the CRI format. */
export function criLines(path: string): { ts: string; stream: string; tag: string; text: string }[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).map((line) => {
    const m = /^(\S+) (stdout|stderr) ([PF]) (.*)$/s.exec(line);
    assert.ok(m, `not a CRI log line: ${JSON.stringify(line)}`);
    assert.ok(!Number.isNaN(Date.parse(m[1]!)), `bad timestamp ${m[1]}`);
    return { ts: m[1]!, stream: m[2]!, tag: m[3]!, text: m[4]! };
  });
}

/**
 * QEMU processes of vmlet domains still alive; with `stateDir`, only those of the daemon using that
 * state dir (their disks, seeds and sockets live under it), so other vmlets on the machine do not count.
 */
export function qemuPids(stateDir?: string): number[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      const cmdline = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      return readFileSync(`/proc/${p}/comm`, 'utf8').startsWith('qemu') && cmdline.includes('vmlet-') && (stateDir === undefined || cmdline.includes(stateDir));
    } catch {
      return false;
    }
  }).map(Number);
}

/** Removes every container and sandbox through the CRI, then stops the daemon. */
export async function removeAllAndStop(d: TestDaemon | undefined): Promise<void> {
  if (!d) return;
  for (const c of (await d.runtime.ListContainers!({}).catch(() => ({ containers: [] }))).containers) {
    await d.runtime.RemoveContainer!({ container_id: c.id }).catch(() => {});
  }
  for (const s of (await d.runtime.ListPodSandbox!({}).catch(() => ({ items: [] }))).items) {
    await d.runtime.RemovePodSandbox!({ pod_sandbox_id: s.id }).catch(() => {});
  }
  await d.cleanup();
}

export function deleteLink(name: string): void {
  try {
    execFileSync('ip', ['link', 'del', name], { stdio: 'ignore' });
  } catch {
    /* never created */
  }
}

/**
 * Deletes host links holding an address in `${prefix}.0/24`: a bridge an earlier, killed run of the
 * same test left behind. Each e2e test owns its /24 of 198.18.0.0/15, and a second route to it
 * (the stale, link-down bridge) would swallow the host's traffic to the new pod.
 */
export function clearStaleTestSubnet(prefix: string): void {
  const out = execFileSync('ip', ['-j', '-4', 'addr', 'show'], { encoding: 'utf8' });
  for (const link of JSON.parse(out) as { ifname: string; addr_info?: { local: string }[] }[]) {
    if (link.addr_info?.some((a) => a.local.startsWith(`${prefix}.`))) {
      process.stderr.write(`removing ${link.ifname}, left by an earlier run with ${prefix}.0/24\n`);
      deleteLink(link.ifname);
    }
  }
}
