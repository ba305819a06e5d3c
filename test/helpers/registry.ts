/**
 * A real distribution registry (Debian's `docker-registry`) on 127.0.0.1 with a random port,
 * its own config and storage; OCI image layouts written by the test and pushed with skopeo.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile, readdir } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tarStream from 'tar-stream';
import { makeTestCa, type TestCa } from './image_server.js';

export function run(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${String(stderr).trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface Registry {
  /** `127.0.0.1:PORT` */
  host: string;
  port: number;
  root: string;
  storage: string;
  ca?: TestCa;
  /** Directory with the CA as `ca.crt` (for skopeo --dest-cert-dir). */
  certDir?: string;
  user?: { username: string; password: string };
  /** Path of a blob's data file in the registry's storage. */
  blobDataPath(digest: string): string;
  close(): Promise<void>;
}

export async function startRegistry(opts: { tls?: boolean; htpasswd?: { username: string; password: string }; ca?: TestCa } = {}): Promise<Registry> {
  const root = await mkdtemp(join(tmpdir(), 'vmlet-registry-'));
  const storage = join(root, 'storage');
  await mkdir(storage);
  const port = await freePort();
  let child: ChildProcess | undefined;
  try {
    const lines = [
      'version: 0.1',
      'log:',
      '  level: warn',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${storage}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
    ];
    let ca: TestCa | undefined;
    let certDir: string | undefined;
    if (opts.tls) {
      ca = opts.ca ?? (await makeTestCa());
      await writeFile(join(root, 'srv.pem'), ca.certPem);
      await writeFile(join(root, 'srv.key'), ca.keyPem);
      certDir = join(root, 'certs');
      await mkdir(certDir);
      await writeFile(join(certDir, 'ca.crt'), ca.caPem);
      lines.push('  tls:', `    certificate: ${join(root, 'srv.pem')}`, `    key: ${join(root, 'srv.key')}`);
    }
    if (opts.htpasswd) {
      const entry = await run('htpasswd', ['-Bbn', opts.htpasswd.username, opts.htpasswd.password]);
      await writeFile(join(root, 'htpasswd'), entry);
      lines.push('auth:', '  htpasswd:', '    realm: vmlet-test', `    path: ${join(root, 'htpasswd')}`);
    }
    await writeFile(join(root, 'config.yml'), `${lines.join('\n')}\n`);
    child = spawn('docker-registry', ['serve', join(root, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      if (stderr.length < 8192) stderr += d.toString();
    });
    const exited = new Promise<never>((_, reject) => child!.once('exit', (code) => reject(new Error(`docker-registry exited (${code}): ${stderr}`))));
    exited.catch(() => {});
    const deadline = Date.now() + 20_000;
    for (;;) {
      const up = await new Promise<boolean>((resolve) => {
        const sock = net.connect(port, '127.0.0.1', () => {
          sock.destroy();
          resolve(true);
        });
        sock.once('error', () => resolve(false));
      });
      if (up) break;
      if (Date.now() > deadline) throw new Error(`docker-registry did not listen on ${port}: ${stderr}`);
      await Promise.race([new Promise((r) => setTimeout(r, 100)), exited]);
    }
    const proc = child;
    const registry: Registry = {
      host: `127.0.0.1:${port}`,
      port,
      root,
      storage,
      blobDataPath: (digest) => {
        const hex = digest.replace(/^sha256:/, '');
        return join(storage, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
      },
      close: async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
          const gone = new Promise((r) => proc.once('exit', r));
          proc.kill('SIGTERM');
          await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
          if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
        }
        await rm(root, { recursive: true, force: true });
      },
    };
    if (ca) registry.ca = ca;
    if (certDir) registry.certDir = certDir;
    if (opts.htpasswd) registry.user = opts.htpasswd;
    return registry;
  } catch (err) {
    child?.kill('SIGKILL');
    await rm(root, { recursive: true, force: true });
    throw err;
  }
}

// ---- OCI layouts ----

export interface TarEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  content?: Buffer;
  linkname?: string;
}

export function tarOf(entries: TarEntry[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    pack.on("data", (c: unknown) => { chunks.push(c as Buffer); });
    pack.on('end', () => resolve(Buffer.concat(chunks)));
    pack.on('error', reject);
  });
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header: Partial<tarStream.Header> & { name: string } = { name: e.name, type, mode: type === 'directory' ? 0o755 : 0o644, mtime: new Date(0) };
    if (e.linkname !== undefined) header.linkname = e.linkname;
    if (type === 'file') pack.entry(header, e.content ?? Buffer.alloc(0));
    else pack.entry(header);
  }
  pack.finalize();
  return done;
}

export function digestOf(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

export interface LayerSpec {
  entries: TarEntry[];
  gzip?: boolean;
}

export interface BuiltImage {
  manifest: Buffer;
  manifestDigest: string;
  config: Buffer;
  layers: { blob: Buffer; digest: string; mediaType: string }[];
}

export async function buildImage(layers: LayerSpec[], opts: { architecture?: string; docker?: boolean } = {}): Promise<BuiltImage> {
  const built: BuiltImage['layers'] = [];
  for (const l of layers) {
    const tar = await tarOf(l.entries);
    const blob = l.gzip === false ? tar : gzipSync(tar);
    const gz = l.gzip !== false;
    const mediaType = opts.docker
      ? `application/vnd.docker.image.rootfs.diff.tar${gz ? '.gzip' : ''}`
      : `application/vnd.oci.image.layer.v1.tar${gz ? '+gzip' : ''}`;
    built.push({ blob, digest: digestOf(blob), mediaType });
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: opts.architecture ?? 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: layers.map((_, i) => digestOf(Buffer.from(String(i)))) },
      config: {},
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: opts.docker ? 'application/vnd.docker.distribution.manifest.v2+json' : 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: opts.docker ? 'application/vnd.docker.container.image.v1+json' : 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length },
      layers: built.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.blob.length })),
    }),
  );
  return { manifest, manifestDigest: digestOf(manifest), config, layers: built };
}

/** Writes an OCI image layout holding `images` (one image, or an index over several platforms) under tag `tag`. */
export async function writeLayout(dir: string, tag: string, images: { image: BuiltImage; architecture?: string }[], asIndex = images.length > 1): Promise<{ topDigest: string }> {
  const blobs = join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const put = async (b: Buffer): Promise<string> => {
    const d = digestOf(b);
    await writeFile(join(blobs, d.slice(7)), b);
    return d;
  };
  for (const { image } of images) {
    await put(image.config);
    for (const l of image.layers) await put(l.blob);
    await put(image.manifest);
  }
  let top: { mediaType: string; digest: string; size: number };
  if (asIndex) {
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: images.map(({ image, architecture }) => ({
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: image.manifestDigest,
          size: image.manifest.length,
          platform: { os: 'linux', architecture: architecture ?? 'amd64' },
        })),
      }),
    );
    top = { mediaType: 'application/vnd.oci.image.index.v1+json', digest: await put(index), size: index.length };
  } else {
    top = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: images[0]!.image.manifestDigest, size: images[0]!.image.manifest.length };
  }
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ ...top, annotations: { 'org.opencontainers.image.ref.name': tag } }] }),
  );
  return { topDigest: top.digest };
}

/** `skopeo copy oci:DIR:TAG docker://REGISTRY/REPO:TAG` (all platforms when the layout holds an index). */
export async function skopeoPush(registry: Registry, layoutDir: string, tag: string, repoTag: string, opts: { all?: boolean } = {}): Promise<void> {
  const args = ['copy', '--quiet', '--preserve-digests'];
  if (opts.all) args.push('--all');
  if (registry.certDir) args.push('--dest-cert-dir', registry.certDir);
  else args.push('--dest-tls-verify=false');
  if (registry.user) args.push('--dest-creds', `${registry.user.username}:${registry.user.password}`);
  args.push(`oci:${layoutDir}:${tag}`, `docker://${registry.host}/${repoTag}`);
  await run('skopeo', args, { timeoutMs: 300_000 });
}

/** Pushes a built image with the distribution API directly (for documents skopeo would refuse). */
export async function apiPush(registry: Registry, repo: string, tag: string, blobs: Buffer[], manifest: Buffer, mediaType: string): Promise<void> {
  const base = `http://${registry.host}/v2/${repo}`;
  for (const blob of blobs) {
    const start = await fetch(`${base}/blobs/uploads/`, { method: 'POST' });
    if (start.status !== 202) throw new Error(`upload start: HTTP ${start.status}`);
    const location = new URL(start.headers.get('location')!, base);
    location.searchParams.set('digest', digestOf(blob));
    const put = await fetch(location, { method: 'PUT', body: blob, headers: { 'content-type': 'application/octet-stream' } });
    if (put.status !== 201) throw new Error(`blob put: HTTP ${put.status} ${await put.text()}`);
  }
  const res = await fetch(`${base}/manifests/${tag}`, { method: 'PUT', body: manifest, headers: { 'content-type': mediaType } });
  if (res.status !== 201) throw new Error(`manifest put: HTTP ${res.status} ${await res.text()}`);
}

export async function listFiles(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}
