/**
 * Makes sure a libvirtd answers on /run/libvirt/libvirt-sock for integration tests. There is no
 * systemd here, so when nothing answers, virtlogd and libvirtd are started directly (`-d`).
 *
 * A libvirtd started by this helper is recorded in MARKER (pid + kernel start time, so a reused
 * pid is never mistaken for it). Only such a libvirtd may be restarted by tests; one that was
 * already running is left alone. The daemon is left running after the tests, as a shared fixture
 * for every integration test file (its first start pays QEMU's capability probe, up to 45 s).
 */
import { execFile } from 'node:child_process';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { promisify } from 'node:util';
import { LibvirtClient } from '../../src/libvirt/client.js';

const execFileAsync = promisify(execFile);

export const LIBVIRT_SOCKET = '/run/libvirt/libvirt-sock';
const VIRTLOGD_SOCKET = '/run/libvirt/virtlogd-sock';
const LIBVIRTD_PIDFILE = '/run/libvirtd.pid';
const VIRTLOGD_PIDFILE = '/run/virtlogd.pid';
const MARKER = '/run/vmlet-test/libvirtd-started-by-tests.json';
const LOCK = '/run/vmlet-test/libvirtd.lock';
/** The first start probes QEMU's capabilities: seen up to 45 s. */
const START_TIMEOUT_MS = 120_000;

interface Marker {
  pid: number;
  startTime: string;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Field 22 of /proc/PID/stat (start time in clock ticks), or undefined when PID is gone or a zombie. */
async function processStartTime(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z') return undefined;
    return fields[19];
  } catch {
    return undefined;
  }
}

async function readPidFile(path: string): Promise<number | undefined> {
  try {
    const pid = Number.parseInt((await readFile(path, 'utf8')).trim(), 10);
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** A pid file whose process is gone would make the daemon refuse to start; remove only such a one. */
async function removeStalePidFile(path: string): Promise<void> {
  const pid = await readPidFile(path);
  if (pid !== undefined && (await processStartTime(pid)) !== undefined) return;
  await rm(path, { force: true });
}

function socketAccepts(path: string, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ path });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** True when libvirtd completes a handshake and a ping within the time limit. */
export async function libvirtdAnswers(timeoutMs = 3_000): Promise<boolean> {
  let client: LibvirtClient | undefined;
  try {
    client = await LibvirtClient.connect({ socketPath: LIBVIRT_SOCKET, connectTimeoutMs: timeoutMs, callTimeoutMs: timeoutMs });
    await client.ping(timeoutMs);
    return true;
  } catch {
    return false;
  } finally {
    await client?.close();
  }
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(250);
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms`);
}

/** Serialises start/restart across test processes: two libvirtd starting at once delete each other's socket. */
async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  await mkdir('/run/vmlet-test', { recursive: true });
  const deadline = Date.now() + START_TIMEOUT_MS * 2;
  for (;;) {
    try {
      const fh = await open(LOCK, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = await readPidFile(LOCK);
      if (holder === undefined || (await processStartTime(holder)) === undefined) {
        await rm(LOCK, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`libvirtd test lock held by pid ${holder} for too long`);
      await sleep(200);
    }
  }
  try {
    return await fn();
  } finally {
    await rm(LOCK, { force: true });
  }
}

async function ensureVirtlogd(): Promise<void> {
  if (await socketAccepts(VIRTLOGD_SOCKET)) return;
  await removeStalePidFile(VIRTLOGD_PIDFILE);
  await execFileAsync('virtlogd', ['-d'], { timeout: 30_000 });
  await waitUntil('virtlogd', () => socketAccepts(VIRTLOGD_SOCKET), 30_000);
}

async function startLibvirtd(): Promise<void> {
  await removeStalePidFile(LIBVIRTD_PIDFILE);
  await execFileAsync('libvirtd', ['-d'], { timeout: START_TIMEOUT_MS });
  await waitUntil('libvirtd', () => libvirtdAnswers(5_000), START_TIMEOUT_MS);
  const pid = await readPidFile(LIBVIRTD_PIDFILE);
  const startTime = pid === undefined ? undefined : await processStartTime(pid);
  if (pid === undefined || startTime === undefined) throw new Error('libvirtd answers but its pid file is missing');
  await mkdir('/run/vmlet-test', { recursive: true });
  await writeFile(MARKER, JSON.stringify({ pid, startTime } satisfies Marker));
}

/** Starts virtlogd and libvirtd if libvirtd does not answer; resolves once it does. */
export async function ensureLibvirtd(): Promise<void> {
  if ((await libvirtdAnswers()) && (await socketAccepts(VIRTLOGD_SOCKET))) return;
  await withLock(async () => {
    await ensureVirtlogd();
    if (await libvirtdAnswers()) return;
    await startLibvirtd();
  });
}

/** How many clients are connected to libvirtd's main server right now (virt-admin srv-clients-list). */
export async function libvirtdClientCount(): Promise<number> {
  const { stdout } = await execFileAsync('virt-admin', ['srv-clients-list', 'libvirtd'], { timeout: 10_000 });
  const lines = stdout.split('\n').map((l) => l.trim());
  const afterRule = lines.findIndex((l) => /^-+$/.test(l));
  if (afterRule < 0) throw new Error(`unexpected virt-admin output: ${stdout}`);
  return lines.slice(afterRule + 1).filter((l) => /^\d+\s/.test(l)).length;
}

/** The pid of the running libvirtd if this helper started it, else undefined (then it must not be touched). */
export async function libvirtdStartedByTests(): Promise<number | undefined> {
  let marker: Marker;
  try {
    marker = JSON.parse(await readFile(MARKER, 'utf8')) as Marker;
  } catch {
    return undefined;
  }
  if (!Number.isInteger(marker.pid) || marker.pid <= 1) return undefined;
  const running = await readPidFile(LIBVIRTD_PIDFILE);
  if (running !== marker.pid) return undefined;
  return (await processStartTime(marker.pid)) === marker.startTime ? marker.pid : undefined;
}

/**
 * Restarts libvirtd, but only one this helper started (checked by pid and start time).
 * `whileDown` runs after the old daemon has exited and before the new one starts.
 * Returns false, doing nothing, for a libvirtd that was started some other way.
 */
export async function restartLibvirtdStartedByTests(whileDown?: () => Promise<void>): Promise<boolean> {
  return withLock(async () => {
    const pid = await libvirtdStartedByTests();
    if (pid === undefined) return false;
    const startTime = await processStartTime(pid);
    process.kill(pid, 'SIGTERM');
    await waitUntil(`exit of libvirtd ${pid}`, async () => (await processStartTime(pid)) !== startTime, 30_000);
    await rm(MARKER, { force: true });
    try {
      if (whileDown) await whileDown();
    } finally {
      // Whatever whileDown found, libvirtd is brought back.
      await startLibvirtd();
    }
    return true;
  });
}
