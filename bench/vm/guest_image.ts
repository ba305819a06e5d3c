/**
 * The test guest (test-guests/build-busybox.sh: a busybox initramfs guest that reports its boot on
 * the serial console) built or taken from its cache, and served over HTTP on 127.0.0.1 so the
 * daemon pulls it through the CRI like any image.
 */
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { REPO_ROOT } from '../lib/daemon.js';

const BUILD_TIMEOUT_MS = 900_000;

/** Runs the build script (a cache hit takes ~0.1 s); resolves with the qcow2 path it prints. */
export function buildTestGuest(): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      join(REPO_ROOT, 'test-guests', 'build-busybox.sh'),
      [],
      { timeout: BUILD_TIMEOUT_MS, maxBuffer: 1024 * 1024 },
      (err, stdout) => {
        if (err) return reject(new Error(`test-guests/build-busybox.sh failed: ${err.message}`));
        const path = stdout.trim().split('\n').pop() ?? '';
        if (!path.endsWith('.qcow2')) return reject(new Error(`test-guests/build-busybox.sh printed no qcow2 path: ${JSON.stringify(stdout)}`));
        resolve(path);
      },
    );
    // Its progress (a first build downloads a kernel .deb) goes to the bench's stderr.
    child.stderr?.pipe(process.stderr);
  });
}

export interface GuestServer {
  url: string;
  bytes: number;
  close(): Promise<void>;
}

/** Serves `path` at http://127.0.0.1:<port>/test-guest.qcow2 (every request gets the file). */
export async function serveGuest(path: string): Promise<GuestServer> {
  const { size } = await stat(path);
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    res.writeHead(200, { 'content-length': size, 'content-type': 'application/octet-stream' });
    if (req.method === 'HEAD') return void res.end();
    createReadStream(path).pipe(res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/test-guest.qcow2`,
    bytes: size,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
