/**
 * Starts a real `vmlet serve` (from the sources, under tsx) with its own temp dirs and socket,
 * and gives a real grpc-js client over the unix socket. stop() sends SIGTERM and returns the exit code.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { unmountUnder } from './mounts.js';
import { chmodSync, mkdtempSync, rmSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadCriServices } from '../../src/cri/proto.js';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const MAIN = join(REPO_ROOT, 'src', 'main.ts');

export type UnaryCall = (request: object, options?: { deadlineMs?: number }) => Promise<any>;
export type CriClient = Record<string, UnaryCall> & { close(): void };

export function criClient(socketPath: string): { runtime: CriClient; image: CriClient } {
  const { runtimeService, imageService } = loadCriServices();
  const make = (def: grpc.ServiceDefinition, name: string): CriClient => {
    const Ctor = grpc.makeGenericClientConstructor(def, name);
    const client = new Ctor(`unix://${socketPath}`, grpc.credentials.createInsecure()) as unknown as Record<string, Function>;
    const out: Record<string, unknown> = { close: () => (client as unknown as grpc.Client).close() };
    for (const method of Object.keys(def)) {
      out[method] = (request: object, options: { deadlineMs?: number } = {}) =>
        new Promise((resolve, reject) => {
          const deadline = new Date(Date.now() + (options.deadlineMs ?? 120_000));
          client[method]!.call(client, request, { deadline }, (err: grpc.ServiceError | null, res: unknown) => (err ? reject(err) : resolve(res)));
        });
    }
    return out as CriClient;
  };
  return { runtime: make(runtimeService, 'RuntimeService'), image: make(imageService, 'ImageService') };
}

export interface TestDaemon {
  dir: string;
  socket: string;
  stateDir: string;
  imageDir: string;
  cniConfDir: string;
  translationsDir: string;
  runtime: CriClient;
  image: CriClient;
  child: ChildProcess;
  output: () => string;
  /** SIGTERM, wait, return the exit code; keeps the temp dir. */
  stop(): Promise<number | null>;
  /** stop() if running, then remove the temp dir (also one passed in as `dir`). */
  cleanup(): Promise<void>;
}

export interface DaemonOptions {
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Reuse the dirs of an earlier daemon (restart tests). */
  dir?: string;
  readyTimeoutMs?: number;
}

export async function startTestDaemon(opts: DaemonOptions = {}): Promise<TestDaemon> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'vmlet-daemon-'));
  // mkdtemp makes it 0700; QEMU's user (--qemu-user) must traverse it to reach the VM files below.
  if (opts.dir === undefined) chmodSync(dir, 0o711);
  const socket = join(dir, 'run', 'vmlet.sock');
  const stateDir = join(dir, 'state');
  const imageDir = join(dir, 'images');
  const cniConfDir = join(dir, 'cni');
  const translationsDir = join(dir, 'translations');
  mkdirSync(cniConfDir, { recursive: true });
  const args = [
    '--import', 'tsx', MAIN, 'serve',
    '--socket', socket,
    '--state-dir', stateDir,
    '--image-dir', imageDir,
    '--cni-conf-dir', cniConfDir,
    '--image-translations-dir', translationsDir,
    '--log-level', 'debug',
    // No warm VMs unless a test asks (--vm-warm-pool N later on the line wins): most tests count domains and QEMUs.
    '--vm-warm-pool', '0',
    ...(opts.args ?? []),
  ];
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  // A daemon that does not come up (some tests expect that) leaves no temp dir of ours behind.
  const failStart = async (message: string): Promise<never> => {
    if (child.exitCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    throw new Error(message);
  };
  while (!output.includes('CRI server listening')) {
    if (child.exitCode !== null) await failStart(`vmlet serve exited with ${child.exitCode}:\n${output}`);
    if (Date.now() > deadline) await failStart(`vmlet serve did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const { runtime, image } = criClient(socket);
  let stopped: Promise<number | null> | undefined;
  const stop = () => {
    if (!stopped) {
      runtime.close();
      image.close();
      if (child.exitCode === null) child.kill('SIGTERM');
      stopped = exited;
    }
    return stopped;
  };
  return {
    dir, socket, stateDir, imageDir, cniConfDir, translationsDir, runtime, image, child,
    output: () => output,
    stop,
    async cleanup() {
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await stop();
      clearTimeout(timer);
      // Also a dir reused from an earlier daemon (restart tests): the last cleanup removes it. A
      // failed test can leave volumes mounted below it (the daemon unmounts them on RemoveContainer).
      if (existsSync(dir)) {
        unmountUnder(dir);
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** The gRPC status code of a rejected call. */
export async function grpcCode(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (err) {
    return (err as grpc.ServiceError).code;
  }
  throw new Error('expected the call to fail');
}
