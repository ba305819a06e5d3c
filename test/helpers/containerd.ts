/**
 * A private containerd (Debian's package) for delegate tests: its own root, state, socket, CNI
 * conf and config, so it never touches a containerd of the host. stop() kills it and its shims,
 * removes the pods' network namespaces it made, and unmounts what it mounted under its dirs.
 */
import { unmountUnder } from './mounts.js';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PAUSE_IMAGE } from './oci_images.js';

export interface TestContainerd {
  socket: string;
  dir: string;
  child: ChildProcess;
  output(): string;
  ctr(args: string[]): string;
  stop(): Promise<void>;
}

export type ContainerdOptions = {
  dir: string;
  /** Where the CNI plugins are (default /usr/lib/cni). */
  cniBinDir?: string;
} & (
  | {
      /** The CNI network for container pods: bridge name and subnet (a /24 or smaller, in 198.18.0.0/15). */
      bridge: string;
      subnet: string;
      gateway: string;
    }
  | {
      /** A CNI conf dir of the caller's (e.g. the one vmlet uses, to compare both on one conflist). */
      cniConfDir: string;
    }
);

/** overlayfs needs a filesystem that supports it under the root; fall back to native otherwise. */
function snapshotterFor(dir: string): 'overlayfs' | 'native' {
  const probe = join(dir, 'overlay-probe');
  for (const d of ['lower', 'upper', 'work', 'merged']) mkdirSync(join(probe, d), { recursive: true });
  try {
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${probe}/lower,upperdir=${probe}/upper,workdir=${probe}/work`, `${probe}/merged`], { stdio: 'ignore' });
    execFileSync('umount', [`${probe}/merged`]);
    return 'overlayfs';
  } catch {
    return 'native';
  }
}

export async function startContainerd(opts: ContainerdOptions): Promise<TestContainerd> {
  const { dir } = opts;
  const root = join(dir, 'root');
  const state = join(dir, 'state');
  const cniConf = 'cniConfDir' in opts ? opts.cniConfDir : join(dir, 'cni');
  const socket = join(dir, 'containerd.sock');
  for (const d of [root, state, cniConf]) mkdirSync(d, { recursive: true });
  if (!('cniConfDir' in opts)) writeFileSync(join(cniConf, '10-containerd-test.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `containerd-test-${opts.bridge}`,
    plugins: [
      {
        type: 'bridge', bridge: opts.bridge, isGateway: true, ipMasq: false, hairpinMode: true,
        ipam: { type: 'host-local', dataDir: join(dir, 'ipam'), ranges: [[{ subnet: opts.subnet, gateway: opts.gateway }]], routes: [{ dst: '198.18.0.0/15' }] },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
      { type: 'loopback' },
    ].slice(0, 2),
  }));
  const snapshotter = snapshotterFor(dir);
  const config = `version = 2
root = "${root}"
state = "${state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "${socket}"
[ttrpc]
  address = "${socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "${join(dir, 'opt')}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "${snapshotter}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${opts.cniBinDir ?? '/usr/lib/cni'}"
    conf_dir = "${cniConf}"
    max_conf_num = 1
`;
  const configPath = join(dir, 'config.toml');
  writeFileSync(configPath, config);
  const child = spawn('containerd', ['--config', configPath, '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'], detached: false });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + 60_000;
  while (!existsSync(socket) || !output.includes('containerd successfully booted')) {
    if (child.exitCode !== null) throw new Error(`containerd exited with ${child.exitCode}:\n${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`containerd did not start:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const ctr = (args: string[]) => execFileSync('ctr', ['--address', socket, '-n', 'k8s.io', ...args], { encoding: 'utf8', timeout: 120_000 });
  return {
    socket, dir, child, ctr,
    output: () => output,
    async stop() {
      // Tasks first (their shims are our children's children), then containerd.
      try {
        for (const id of ctr(['tasks', 'ls', '-q']).split('\n').filter(Boolean)) {
          try {
            ctr(['tasks', 'kill', '-s', 'SIGKILL', id]);
          } catch {
            /* already gone */
          }
        }
      } catch {
        /* containerd not answering */
      }
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
      for (const pid of shimPids(dir)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      unmountUnder(dir);
    },
  };
}

/** containerd-shim processes whose command line names our dirs. */
function shimPids(dir: string): number[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/comm`, 'utf8').startsWith('containerd-shim') && readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir);
    } catch {
      return false;
    }
  }).map(Number);
}

