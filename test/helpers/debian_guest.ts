/**
 * Shared setup of the end-to-end tests that boot the Debian 12 cloud-init test guest
 * (test-guests/build-debian-cloud.sh): the image built or found in the cache, served over HTTP on
 * 127.0.0.1, an SSH key of the test's own, a bridge conflist on the test's /24, and ssh into the
 * guest as Debian's default user (cloud-init gives VirtletSSHKeys to it).
 */
import { execFile, execFileSync } from 'node:child_process';
import { createReadStream, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, type TestDaemon } from './daemon.js';

const run = promisify(execFile);

/** Debian's cloud.cfg default user. */
export const DEBIAN_GUEST_USER = 'debian';

/** Builds a test guest (a few minutes the first time) or finds it in the cache; its qcow2 path. */
export function buildTestGuest(script: 'build-debian-cloud.sh' | 'build-busybox.sh'): string {
  return execFileSync(join(REPO_ROOT, 'test-guests', script), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 1_200_000 }).trim();
}

/** Serves `files` (URL path → file) on 127.0.0.1; the base URL and a close(). */
export async function serveFiles(files: Record<string, string>): Promise<{ base: string; close: () => void }> {
  const server = createServer((req, res) => {
    const path = files[req.url ?? ''];
    if (!path) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': statSync(path).size });
    createReadStream(path).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}

export interface SshKey {
  path: string;
  /** The `.pub` line, as VirtletSSHKeys takes it. */
  publicKey: string;
}

/** A new ed25519 key without passphrase at `path`. */
export function makeSshKey(path: string, comment: string): SshKey {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path]);
  return { path, publicKey: readFileSync(`${path}.pub`, 'utf8').trim() };
}

/** Runs `command` in the guest at `ip` as the default user with `key`; its stdout. */
export async function sshGuest(key: SshKey, ip: string, command: string, timeoutMs = 60_000): Promise<string> {
  const { stdout } = await run('ssh', [
    '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes',
    '-o', 'ConnectTimeout=5', '-o', 'LogLevel=ERROR', '-i', key.path, `${DEBIAN_GUEST_USER}@${ip}`, command,
  ], { timeout: timeoutMs, encoding: 'utf8' });
  return stdout;
}

/** The guest's SSH host key fingerprints (ssh-keyscan from the host), sorted. */
export async function hostKeyFingerprints(ip: string): Promise<string[]> {
  const { stdout } = await run('sh', ['-c', `ssh-keyscan -T 10 ${ip} 2>/dev/null | ssh-keygen -lf -`], { timeout: 30_000, encoding: 'utf8' });
  return stdout.split('\n').map((l) => l.split(' ')[1] ?? '').filter(Boolean).sort();
}

/**
 * A bridge conflist (host-local IPAM, the gateway .1, a default route) in the daemon's CNI dir;
 * `subnet` is the first three octets of the test's /24. With `ipv6` (a CIDR and its gateway) the
 * IPAM gets a second range of that family and an IPv6 default route (dual stack). Returns the CNI
 * network name.
 */
export function writeBridgeConflist(d: TestDaemon, file: string, opts: { name: string; bridge: string; subnet: string; ipv6?: { subnet: string; gateway: string } }): string {
  const ranges: { subnet: string; gateway: string }[][] = [[{ subnet: `${opts.subnet}.0/24`, gateway: `${opts.subnet}.1` }]];
  const routes = [{ dst: '0.0.0.0/0' }];
  if (opts.ipv6) {
    ranges.push([{ subnet: opts.ipv6.subnet, gateway: opts.ipv6.gateway }]);
    routes.push({ dst: '::/0' });
  }
  writeFileSync(join(d.cniConfDir, file), JSON.stringify({
    cniVersion: '1.0.0',
    name: opts.name,
    plugins: [{
      type: 'bridge', bridge: opts.bridge, isGateway: true, ipMasq: false,
      ipam: { type: 'host-local', dataDir: join(d.dir, 'ipam'), ranges, routes },
    }],
  }));
  return opts.name;
}
