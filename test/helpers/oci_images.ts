/**
 * OCI test images built locally (no registry is reachable): a busybox root filesystem from
 * Debian's busybox-static and a tiny pause binary built with gcc, written as an OCI image layout
 * tar whose index names every image, for `ctr -n k8s.io images import`.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync, readFileSync, symlinkSync, chmodSync, copyFileSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestImage {
  name: string;
  /** 'busybox' or 'pause' root filesystem. */
  rootfs: 'busybox' | 'pause';
  cmd: string[];
  entrypoint?: string[];
  exposedPort?: number;
}

const E2E = 'registry.k8s.io/e2e-test-images/';
const CRI_TOOLS = 'gcr.io/k8s-staging-cri-tools/';
const HTTPD = (port: number) => ['httpd', '-f', '-p', String(port), '-h', '/www'];

/** Names critest v1.26.1 uses (pkg/framework/util.go, pkg/validate/consts.go, multi_container_linux.go) plus a pause image. */
export const PAUSE_IMAGE = 'vmlet.test/pause:1';
export const CRITEST_IMAGES: TestImage[] = [
  { name: `${E2E}busybox:1.29-2`, rootfs: 'busybox', cmd: ['sh'] },
  { name: `${E2E}nginx:1.14-2`, rootfs: 'busybox', cmd: HTTPD(80), exposedPort: 80 },
  { name: `${E2E}httpd:2.4.39-4`, rootfs: 'busybox', cmd: HTTPD(80), exposedPort: 80 },
  { name: `${CRI_TOOLS}hostnet-nginx-amd64:latest`, rootfs: 'busybox', cmd: HTTPD(12003), exposedPort: 12003 },
  { name: PAUSE_IMAGE, rootfs: 'pause', cmd: [], entrypoint: ['/pause'] },
];

const PAUSE_C = `#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void done(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  signal(SIGINT, done); signal(SIGTERM, done); signal(SIGCHLD, reap);
  for (;;) pause();
}
`;

function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function busyboxRootfs(dir: string): void {
  for (const d of ['bin', 'etc', 'tmp', 'www', 'root', 'proc', 'sys', 'dev', 'var/www']) mkdirSync(join(dir, d), { recursive: true });
  chmodSync(join(dir, 'tmp'), 0o1777);
  copyFileSync('/bin/busybox', join(dir, 'bin', 'busybox'));
  chmodSync(join(dir, 'bin', 'busybox'), 0o755);
  const applets = execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a && a !== 'busybox');
  for (const a of applets) symlinkSync('busybox', join(dir, 'bin', a));
  writeFileSync(join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  writeFileSync(join(dir, 'etc', 'group'), 'root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n');
  writeFileSync(join(dir, 'www', 'index.html'), '<html><body>vmlet test web server</body></html>\n');
}

function pauseRootfs(dir: string, work: string): void {
  writeFileSync(join(work, 'pause.c'), PAUSE_C);
  execFileSync('gcc', ['-static', '-Os', '-o', join(dir, 'pause'), join(work, 'pause.c')]);
}

function layerOf(rootfs: string, out: string): { digest: string; size: number } {
  execFileSync('tar', ['--owner=0', '--group=0', '--numeric-owner', '--sort=name', '--mtime=@0', '-C', rootfs, '-cf', out, '.']);
  const bytes = readFileSync(out);
  return { digest: sha256(bytes), size: bytes.length };
}

/** Writes the OCI layout tar of `images` to `outTar`. */
export function buildOciArchive(images: TestImage[], outTar: string): void {
  const work = mkdtempSync(join(tmpdir(), 'vmlet-oci-'));
  try {
    const layout = join(work, 'layout');
    const blobs = join(layout, 'blobs', 'sha256');
    mkdirSync(blobs, { recursive: true });
    const putBlob = (data: Buffer) => {
      const digest = sha256(data);
      writeFileSync(join(blobs, digest.slice(7)), data);
      return { digest, size: data.length };
    };
    const layers: Record<string, { digest: string; size: number }> = {};
    for (const kind of new Set(images.map((i) => i.rootfs))) {
      const rootfs = join(work, `rootfs-${kind}`);
      mkdirSync(rootfs);
      if (kind === 'busybox') busyboxRootfs(rootfs);
      else pauseRootfs(rootfs, work);
      const tarPath = join(work, `${kind}.tar`);
      const layer = layerOf(rootfs, tarPath);
      copyFileSync(tarPath, join(blobs, layer.digest.slice(7)));
      layers[kind] = layer;
    }
    const manifests = images.map((img) => {
      const layer = layers[img.rootfs]!;
      const config = putBlob(Buffer.from(JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: {
          Env: ['PATH=/bin'],
          Cmd: img.cmd,
          ...(img.entrypoint ? { Entrypoint: img.entrypoint } : {}),
          ...(img.exposedPort ? { ExposedPorts: { [`${img.exposedPort}/tcp`]: {} } } : {}),
          WorkingDir: '/',
        },
        rootfs: { type: 'layers', diff_ids: [layer.digest] },
      })));
      const manifest = putBlob(Buffer.from(JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
      })));
      return {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        ...manifest,
        platform: { architecture: 'amd64', os: 'linux' },
        annotations: { 'io.containerd.image.name': img.name, 'org.opencontainers.image.ref.name': img.name.split(':').pop()! },
      };
    });
    writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    writeFileSync(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests }));
    execFileSync('tar', ['-C', layout, '-cf', outTar, '.']);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
