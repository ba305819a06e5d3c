// Boots the test guest built by test-guests/build-busybox.sh under QEMU (TCG) with a
// NoCloud seed ISO and checks the console protocol from test-guests/README.md, the
// DHCP lease, the TCP responder and the ACPI power-button shutdown.
// Needs root (netns, TAP), qemu-system-x86_64, qemu-img, genisoimage, busybox.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import net from 'node:net';

const execFileAsync = promisify(execFile);
const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const buildScript = join(repoRoot, 'test-guests', 'build-busybox.sh');

const READY_TIMEOUT_MS = 60_000;
const POWEROFF_TIMEOUT_MS = 20_000;

let imagePath = '';

async function runBuild(): Promise<{ path: string; log: string; ms: number }> {
  const started = Date.now();
  const { stdout, stderr } = await execFileAsync('bash', [buildScript], {
    timeout: 900_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  const lines = stdout.trim().split('\n');
  return { path: lines[lines.length - 1] ?? '', log: stderr, ms: Date.now() - started };
}

before(async () => {
  imagePath = (await runBuild()).path;
  assert.match(imagePath, /test-guest\.qcow2$/);
  assert.ok((await stat(imagePath)).size > 1024 * 1024, `${imagePath} is too small to be a bootable image`);
});

/** One "VMLET-GUEST ..." console line, split into words. */
interface GuestLine {
  words: string[];
  atMs: number;
}

/** Collects the serial console and lets a test wait for protocol lines. */
class GuestConsole {
  readonly raw: string[] = [];
  readonly lines: GuestLine[] = [];
  private pending = '';
  private waiters: Array<{ match: (l: GuestLine) => boolean; resolve: (l: GuestLine) => void }> = [];

  constructor(private readonly startedAt: number) {}

  push(chunk: Buffer): void {
    this.pending += chunk.toString('utf8');
    let nl: number;
    while ((nl = this.pending.indexOf('\n')) >= 0) {
      const line = this.pending.slice(0, nl).replace(/\r$/, '');
      this.pending = this.pending.slice(nl + 1);
      this.raw.push(line);
      // Screen-clearing escapes from the firmware can precede the first line.
      const at = line.indexOf('VMLET-GUEST ');
      if (at < 0) continue;
      const parsed = { words: line.slice(at + 'VMLET-GUEST '.length).trim().split(/\s+/), atMs: Date.now() - this.startedAt };
      this.lines.push(parsed);
      this.waiters = this.waiters.filter((w) => {
        if (!w.match(parsed)) return true;
        w.resolve(parsed);
        return false;
      });
    }
  }

  find(first: string): GuestLine | undefined {
    return this.lines.find((l) => l.words[0] === first);
  }

  waitFor(first: string, timeoutMs: number, exited: Promise<unknown>): Promise<GuestLine> {
    const seen = this.find(first);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no "VMLET-GUEST ${first}" within ${timeoutMs} ms; console:\n${this.raw.join('\n')}`)),
        timeoutMs,
      );
      exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`QEMU exited before "VMLET-GUEST ${first}"; console:\n${this.raw.join('\n')}`));
      });
      this.waiters.push({
        match: (l) => l.words[0] === first,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
    });
  }
}

/** Sends one QMP command over QEMU's monitor socket and returns its "return" value. */
async function qmp(socketPath: string, command: string): Promise<unknown> {
  const socket = net.createConnection(socketPath);
  try {
    const replies: Array<Record<string, unknown>> = [];
    let buffer = '';
    let wake: (() => void) | undefined;
    socket.on('data', (d) => {
      buffer += d.toString('utf8');
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const text = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (text) replies.push(JSON.parse(text) as Record<string, unknown>);
      }
      wake?.();
    });
    const next = async (): Promise<Record<string, unknown>> => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const idx = replies.findIndex((r) => !('event' in r));
        if (idx >= 0) return replies.splice(idx, 1)[0]!;
        if (Date.now() > deadline) throw new Error('QMP reply timed out');
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 200);
        });
      }
    };
    assert.ok('QMP' in (await next()), 'QMP greeting');
    socket.write(JSON.stringify({ execute: 'qmp_capabilities' }) + '\n');
    assert.deepEqual((await next()).return, {});
    socket.write(JSON.stringify({ execute: command }) + '\n');
    const reply = await next();
    assert.ok('return' in reply, `QMP ${command} failed: ${JSON.stringify(reply)}`);
    return reply.return;
  } finally {
    socket.destroy();
  }
}

function exitOf(proc: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (proc.exitCode !== null || proc.signalCode !== null) {
    return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode });
  }
  return new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Ends a process this test started, by its pid, and waits until it is gone. */
async function stopProcess(proc: ChildProcess | undefined): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = exitOf(proc);
  proc.kill('SIGKILL');
  await exited;
}

async function makeSeedIso(dir: string, instanceId: string, hostname: string): Promise<string> {
  const files = join(dir, 'seed');
  await mkdir(files);
  await writeFile(join(files, 'meta-data'), `instance-id: ${instanceId}\nlocal-hostname: ${hostname}\n`);
  await writeFile(join(files, 'user-data'), '#cloud-config\n{}\n');
  await writeFile(join(files, 'network-config'), 'version: 2\nethernets: {}\n');
  const iso = join(dir, 'seed.iso');
  await execFileAsync(
    'genisoimage',
    ['-quiet', '-output', iso, '-volid', 'cidata', '-joliet', '-rock', 'meta-data', 'user-data', 'network-config'],
    { cwd: files },
  );
  return iso;
}

interface BootOptions {
  dir: string;
  seedIso: string;
  machine: 'pc' | 'q35';
  /** pc: the PIIX IDE controller; q35: its built-in AHCI (SATA), as libvirt attaches a CD-ROM. */
  netns?: { name: string; tap: string; mac: string };
}

interface Guest {
  proc: ChildProcess;
  console: GuestConsole;
  qmpSocket: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function bootGuest(opts: BootOptions): Promise<Guest> {
  // The cached image stays pristine: the guest gets an overlay, as vmlet gives pods.
  const overlay = join(opts.dir, 'overlay.qcow2');
  await execFileAsync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', imagePath, '-F', 'qcow2', overlay]);
  const qmpSocket = join(opts.dir, 'qmp.sock');
  const args = [
    '-accel', 'tcg', '-machine', opts.machine, '-m', '256', '-nodefaults', '-no-user-config', '-display', 'none',
    '-serial', 'stdio',
    '-qmp', `unix:${qmpSocket},server=on,wait=off`,
    '-drive', `file=${overlay},format=qcow2,if=virtio`,
    '-drive', `file=${opts.seedIso},format=raw,if=none,id=seed,media=cdrom,readonly=on`,
    '-device', 'ide-cd,drive=seed,bus=ide.0',
  ];
  if (opts.netns) {
    args.push(
      '-netdev', `tap,id=net0,ifname=${opts.netns.tap},script=no,downscript=no`,
      '-device', `virtio-net-pci,netdev=net0,mac=${opts.netns.mac}`,
    );
  }
  // `ip netns exec` execs QEMU, so the child's pid is QEMU's.
  const [cmd, argv] = opts.netns
    ? ['ip', ['netns', 'exec', opts.netns.name, 'qemu-system-x86_64', ...args]]
    : ['qemu-system-x86_64', args];
  const proc = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
  const guestConsole = new GuestConsole(Date.now());
  proc.stdout!.on('data', (d: Buffer) => guestConsole.push(d));
  proc.stderr!.on('data', (d: Buffer) => guestConsole.push(d));
  return { proc, console: guestConsole, qmpSocket, exited: exitOf(proc) };
}

async function powerOffAndWait(guest: Guest): Promise<number> {
  const sent = Date.now();
  await qmp(guest.qmpSocket, 'system_powerdown');
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error(`QEMU still running ${POWEROFF_TIMEOUT_MS} ms after system_powerdown`)), POWEROFF_TIMEOUT_MS).unref(),
  );
  const result = await Promise.race([guest.exited, timeout]);
  assert.deepEqual(result, { code: 0, signal: null }, 'QEMU exits by itself, cleanly');
  return Date.now() - sent;
}

async function netnsExists(name: string): Promise<boolean> {
  const { stdout } = await execFileAsync('ip', ['netns', 'list']);
  return stdout.split('\n').some((l) => l.split(' ')[0] === name);
}

test('second build run reuses the cached image', async () => {
  const first = await stat(imagePath);
  const again = await runBuild();
  assert.equal(again.path, imagePath);
  assert.doesNotMatch(again.log, /building/, 'nothing is rebuilt');
  const second = await stat(imagePath);
  assert.equal(second.ino, first.ino);
  assert.equal(second.mtimeMs, first.mtimeMs);
});

test('pc guest with an IDE seed and a NIC: DHCP lease, seed lines, TCP responder, ACPI poweroff', { timeout: 120_000 }, async (t) => {
  const id = randomBytes(3).toString('hex');
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-imgtest-'));
  const ns = `vmlet-imgtest-${id}`;
  const tap = `vmimg${id}`;
  const mac = `52:54:00:${id.slice(0, 2)}:${id.slice(2, 4)}:${id.slice(4, 6)}`;
  let udhcpd: ChildProcess | undefined;
  let guest: Guest | undefined;
  t.after(async () => {
    await stopProcess(guest?.proc);
    await stopProcess(udhcpd);
    if (await netnsExists(ns)) await execFileAsync('ip', ['netns', 'del', ns]);
    await rm(dir, { recursive: true, force: true });
    assert.equal(await netnsExists(ns), false, 'netns removed');
    assert.equal(existsSync(dir), false, 'temp dir removed');
  });

  // A namespace with the TAP the guest's NIC is plugged into and a DHCP server on it.
  await execFileAsync('ip', ['netns', 'add', ns]);
  for (const step of [
    ['link', 'set', 'lo', 'up'],
    ['tuntap', 'add', tap, 'mode', 'tap'],
    ['addr', 'add', '198.18.77.1/24', 'dev', tap],
    ['link', 'set', tap, 'up'],
  ]) {
    await execFileAsync('ip', ['-n', ns, ...step]);
  }
  const udhcpdConf = join(dir, 'udhcpd.conf');
  await writeFile(join(dir, 'udhcpd.leases'), '');
  await writeFile(
    udhcpdConf,
    [
      'start 198.18.77.10', 'end 198.18.77.20', `interface ${tap}`,
      `lease_file ${join(dir, 'udhcpd.leases')}`, `pidfile ${join(dir, 'udhcpd.pid')}`,
      'option subnet 255.255.255.0', 'option router 198.18.77.1', 'option dns 198.18.77.1', 'option lease 3600', '',
    ].join('\n'),
  );
  udhcpd = spawn('ip', ['netns', 'exec', ns, 'busybox', 'udhcpd', '-f', '-a', '100', udhcpdConf], { stdio: 'ignore' });

  const seedIso = await makeSeedIso(dir, `iid-${id}`, `pod-${id}`);
  guest = await bootGuest({ dir, seedIso, machine: 'pc', netns: { name: ns, tap, mac } });
  const ready = await guest.console.waitFor('ready', READY_TIMEOUT_MS, guest.exited);
  t.diagnostic(`pc: QEMU start to "ready" ${ready.atMs} ms`);

  const c = guest.console;
  assert.deepEqual(c.find('instance-id')?.words, ['instance-id', `iid-${id}`]);
  assert.deepEqual(c.find('hostname')?.words, ['hostname', `pod-${id}`]);
  assert.deepEqual(c.find('seed')?.words, ['seed', '/dev/sr0']);
  assert.deepEqual(c.find('nic')?.words, ['nic', 'eth0', mac]);
  const ipLine = c.find('ip')?.words;
  assert.ok(ipLine, `an ip line; console:\n${c.raw.join('\n')}`);
  assert.equal(ipLine[1], 'eth0');
  assert.match(ipLine[2]!, /^198\.18\.77\.(1\d|20)\/24$/);
  assert.deepEqual(c.find('route')?.words, ['route', 'eth0', 'default', 'via', '198.18.77.1']);
  // Every protocol line comes before "ready", but the agent's, which come from a background job.
  const boot = c.lines.filter((l) => !l.words[0]!.startsWith('agent'));
  assert.equal(boot[boot.length - 1]?.words[0], 'ready');

  const guestIp = ipLine[2]!.split('/')[0]!;
  // (busybox 1.35's wget -T crashes, hence the execFile timeout.)
  const { stdout: body } = await execFileAsync(
    'ip',
    ['netns', 'exec', ns, 'busybox', 'wget', '-q', '-O', '-', `http://${guestIp}:8080/`],
    { timeout: 15_000 },
  );
  assert.equal(body, `vmlet-guest pod-${id}\n`);

  const poweroffMs = await powerOffAndWait(guest);
  t.diagnostic(`pc: system_powerdown to QEMU exit ${poweroffMs} ms`);
  assert.ok(c.find('power-button'), 'acpid saw the power button');
  assert.ok(c.find('shutdown'), 'init ran the shutdown steps');
});

test('q35 guest with the seed on SATA (AHCI), no NIC: seed lines, ready, ACPI poweroff', { timeout: 120_000 }, async (t) => {
  const id = randomBytes(3).toString('hex');
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-imgtest-'));
  let guest: Guest | undefined;
  t.after(async () => {
    await stopProcess(guest?.proc);
    await rm(dir, { recursive: true, force: true });
    assert.equal(existsSync(dir), false, 'temp dir removed');
  });

  const seedIso = await makeSeedIso(dir, `iid-${id}`, `q35-${id}`);
  guest = await bootGuest({ dir, seedIso, machine: 'q35' });
  const ready = await guest.console.waitFor('ready', READY_TIMEOUT_MS, guest.exited);
  t.diagnostic(`q35: QEMU start to "ready" ${ready.atMs} ms`);

  const c = guest.console;
  assert.deepEqual(c.find('instance-id')?.words, ['instance-id', `iid-${id}`]);
  assert.deepEqual(c.find('hostname')?.words, ['hostname', `q35-${id}`]);
  assert.equal(c.find('nic'), undefined, 'no NIC, no nic line');

  const poweroffMs = await powerOffAndWait(guest);
  t.diagnostic(`q35: system_powerdown to QEMU exit ${poweroffMs} ms`);
  assert.ok(c.find('shutdown'), 'init ran the shutdown steps');
});
