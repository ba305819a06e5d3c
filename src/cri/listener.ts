/**
 * The CRI unix socket: directory 0700, socket 0600. A stale socket file (nobody answers) is
 * replaced; a live one held by another process, or any other kind of file, is refused.
 */
import net from 'node:net';
import { lstat, mkdir, unlink, chmod } from 'node:fs/promises';
import { dirname } from 'node:path';

export class SocketInUseError extends Error {}

async function isAnswering(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(path);
    const done = (alive: boolean) => {
      probe.destroy();
      resolve(alive);
    };
    probe.once('connect', () => done(true));
    probe.once('error', () => done(false));
    probe.setTimeout(1000, () => done(true)); // something holds it but is slow: do not steal it
  });
}

export async function listenUnix(path: string, onConnection: (socket: net.Socket) => void): Promise<net.Server> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await chmod(dirname(path), 0o700);
  const existing = await lstat(path).catch(() => undefined);
  if (existing) {
    if (!existing.isSocket()) throw new SocketInUseError(`${path} exists and is not a socket; refusing to replace it`);
    if (await isAnswering(path)) throw new SocketInUseError(`another process is serving on ${path}`);
    await unlink(path);
  }
  const server = net.createServer({ allowHalfOpen: false }, onConnection);
  // The umask closes the window between bind() and chmod() in which others could connect.
  const oldMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(oldMask);
  }
  await chmod(path, 0o600);
  return server;
}
