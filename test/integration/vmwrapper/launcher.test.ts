/**
 * The installed vmwrapper launcher as real processes, without libvirt: a stand-in "QEMU" script
 * at the end of the exec chain reports the pid, network namespace, credentials and arguments it
 * got, which are what QEMU would get. Also installVmwrapper's idempotence and refusals on real
 * files. Everything lives under /run/vmlet-test/launcher-<tag> and netns vmlet-test-<tag>*, and
 * is removed afterwards (checked).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chown, lstat, mkdir, readdir, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { FailedPreconditionError } from '../../../src/errors.js';
import { runTool } from '../../../src/network/iproute.js';
import { installVmwrapper, VMWRAPPER_FILE_NAME } from '../../../src/vmwrapper/install.js';
import { LAUNCHER_REFUSED_EXIT } from '../../../src/vmwrapper/launcher.js';
import { REFUSED_NETNS_PATHS } from '../../unit/vmwrapper/netns_path_cases.js';

const tag = randomBytes(3).toString('hex');
const root = `/run/vmlet-test/launcher-${tag}`;
const netns = `vmlet-test-${tag}`;
const netnsPath = `/run/netns/${netns}`;
const strayLink = `/run/netns/vmlet-test-${tag}l`;
const strayFile = `/run/netns/vmlet-test-${tag}f`;
const fakeQemu = join(root, 'fake-qemu');
const installDir = join(root, 'bin');
let launcher: string;

/** Stands in for QEMU at the end of the chain; $$ is the pid the chain ends in. */
const FAKE_QEMU = `#!/bin/sh
out=$VMLET_TEST_OUT
{
  echo "pid=$$"
  echo "netns=$(readlink /proc/$$/ns/net)"
  grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/$$/status
} > "$out.info"
printf '%s\\0' "$@" > "$out.args"
exit 7
`;

interface Report {
  exitCode: number | null;
  spawnedPid: number;
  stderr: string;
  info?: Record<string, string>;
  args?: string[];
}

async function runLauncher(path: string, args: string[], netnsValue?: string): Promise<Report> {
  const out = join(root, `out-${randomBytes(4).toString('hex')}`);
  const env: NodeJS.ProcessEnv = { PATH: '/usr/bin:/bin', VMLET_TEST_OUT: out };
  if (netnsValue !== undefined) env.VMLET_NETNS = netnsValue;
  const child = spawn(path, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exitCode = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  const report: Report = { exitCode, spawnedPid: child.pid!, stderr };
  try {
    const text = await readFile(`${out}.info`, 'utf8');
    report.info = Object.fromEntries(
      text
        .trim()
        .split('\n')
        .map((line) => {
          const m = /^([A-Za-z]+)[:=]\s*(.*)$/.exec(line)!;
          return [m[1]!, m[2]!.trim()];
        }),
    );
    const raw = await readFile(`${out}.args`, 'utf8');
    report.args = raw === '' ? [] : raw.slice(0, -1).split('\0');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  } finally {
    await rm(`${out}.info`, { force: true });
    await rm(`${out}.args`, { force: true });
  }
  return report;
}

function assertNoPrivileges(info: Record<string, string>): void {
  for (const cap of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) {
    assert.equal(info[cap], '0000000000000000', `${cap} = ${info[cap]}`);
  }
  assert.equal(info.NoNewPrivs, '1');
  assert.equal(info.Groups, '');
  // uid/gid 0 on purpose (README: libvirt prepares the domain's files for its configured user).
  assert.equal(info.Uid, '0\t0\t0\t0');
  assert.equal(info.Gid, '0\t0\t0\t0');
}

async function netnsInode(path: string): Promise<string> {
  return `net:[${(await stat(path)).ino}]`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

before(async () => {
  await mkdir(root, { recursive: true, mode: 0o755 });
  await writeFile(fakeQemu, FAKE_QEMU, { mode: 0o755 });
  await runTool('ip', ['netns', 'add', netns], { timeoutMs: 10_000 });
  launcher = await installVmwrapper(installDir, { qemuPath: fakeQemu });
});

after(async () => {
  await rm(strayLink, { force: true });
  await rm(strayFile, { force: true });
  await runTool('ip', ['netns', 'delete', netns], { timeoutMs: 10_000 }).catch(() => undefined);
  await rm(root, { recursive: true, force: true });
  assert.equal(await exists(root), false);
  assert.equal(await exists(netnsPath), false);
  assert.equal(await exists(strayLink), false);
  assert.equal(await exists(strayFile), false);
});

test('without VMLET_NETNS QEMU runs in place, unprivileged, with the exact arguments', async () => {
  const args = ['-S', '-machine', 'none,accel=kvm:tcg', 'with space', '', "quo'te\"s", '$HOME', '--', '-x\nnewline'];
  const r = await runLauncher(launcher, args);
  assert.equal(r.exitCode, 7, r.stderr);
  assert.ok(r.info, 'the stand-in QEMU ran');
  assert.equal(r.info.pid, String(r.spawnedPid), 'QEMU is the process that was started (exec, no wrapper parent)');
  assert.equal(r.info.netns, await netnsInode('/proc/self/ns/net'));
  assert.deepEqual(r.args, args);
  assertNoPrivileges(r.info);
});

test('with VMLET_NETNS QEMU runs inside that netns, unprivileged, as the started pid', async () => {
  const r = await runLauncher(launcher, ['-name', 'guest=x'], netnsPath);
  assert.equal(r.exitCode, 7, r.stderr);
  assert.ok(r.info);
  assert.equal(r.info.pid, String(r.spawnedPid));
  assert.equal(r.info.netns, await netnsInode(netnsPath));
  assert.notEqual(r.info.netns, await netnsInode('/proc/self/ns/net'));
  assert.deepEqual(r.args, ['-name', 'guest=x']);
  assertNoPrivileges(r.info);
});

test('every VMLET_NETNS value that is not /run/netns/<vmlet netns> is refused before QEMU runs', async () => {
  for (const value of REFUSED_NETNS_PATHS) {
    const r = await runLauncher(launcher, ['-version'], value);
    assert.equal(r.exitCode, LAUNCHER_REFUSED_EXIT, `${JSON.stringify(value)}: ${r.stderr}`);
    assert.match(r.stderr, /^vmlet-vmwrapper: /);
    assert.equal(r.info, undefined, `${JSON.stringify(value)} reached QEMU`);
  }
});

test('a missing netns, a symlink and a plain file in /run/netns are refused', async () => {
  const missing = await runLauncher(launcher, [], `/run/netns/vmlet-test-${tag}-missing`);
  assert.equal(missing.exitCode, LAUNCHER_REFUSED_EXIT, missing.stderr);
  assert.equal(missing.info, undefined);

  await symlink(netnsPath, strayLink);
  const link = await runLauncher(launcher, [], strayLink);
  assert.equal(link.exitCode, LAUNCHER_REFUSED_EXIT, link.stderr);
  assert.equal(link.info, undefined);

  // Passes the launcher's own checks; nsenter then refuses a file that is not a namespace.
  await writeFile(strayFile, '');
  const plain = await runLauncher(launcher, [], strayFile);
  assert.notEqual(plain.exitCode, 0);
  assert.notEqual(plain.exitCode, 7);
  assert.equal(plain.info, undefined);
});

test('installVmwrapper is idempotent: same content, no rewrite (libvirt keys its probe cache on ctime)', async () => {
  const before = await stat(launcher, { bigint: true });
  assert.equal(await installVmwrapper(installDir, { qemuPath: fakeQemu }), launcher);
  const again = await stat(launcher, { bigint: true });
  assert.equal(again.ino, before.ino);
  assert.equal(again.ctimeNs, before.ctimeNs);
  assert.equal(before.mode & 0o7777n, 0o755n);
  assert.equal(before.uid, 0n);
  assert.deepEqual(await readdir(installDir), [VMWRAPPER_FILE_NAME], 'no temp files left');
});

test('installVmwrapper rewrites atomically when QEMU changes, with mode 0755 whatever the umask', async () => {
  const old = await stat(launcher, { bigint: true });
  const oldText = await readFile(launcher, 'utf8');
  // A QEMU upgrade: the binary's mtime changes.
  const later = new Date(Date.now() + 60_000);
  await utimes(fakeQemu, later, later);
  const umask = process.umask(0o077);
  try {
    await installVmwrapper(installDir, { qemuPath: fakeQemu });
  } finally {
    process.umask(umask);
  }
  const now = await stat(launcher, { bigint: true });
  assert.notEqual(now.ino, old.ino, 'replaced by rename, not rewritten in place');
  assert.equal(now.mode & 0o7777n, 0o755n);
  assert.notEqual(await readFile(launcher, 'utf8'), oldText);
  assert.deepEqual(await readdir(installDir), [VMWRAPPER_FILE_NAME]);
  const r = await runLauncher(launcher, ['ok']);
  assert.equal(r.exitCode, 7, r.stderr);
});

test('installVmwrapper refuses unsafe places, foreign files and a missing QEMU', async () => {
  // World-writable (sticky /tmp), and owned by someone else.
  await assert.rejects(installVmwrapper(`/tmp/vmlet-test-${tag}/bin`, { qemuPath: fakeQemu }), FailedPreconditionError);
  assert.equal(await exists(`/tmp/vmlet-test-${tag}`), false, 'nothing created under an unsafe parent');
  const foreignDir = join(root, 'nobody');
  await mkdir(foreignDir, { mode: 0o755 });
  await chown(foreignDir, 65534, 65534);
  await assert.rejects(installVmwrapper(foreignDir, { qemuPath: fakeQemu }), FailedPreconditionError);
  assert.deepEqual(await readdir(foreignDir), []);
  // A symlinked directory.
  const linkDir = join(root, 'linkdir');
  await symlink(installDir, linkDir);
  await assert.rejects(installVmwrapper(linkDir, { qemuPath: fakeQemu }), FailedPreconditionError);
  // Somebody else's file at the launcher's path stays as it is.
  const otherDir = join(root, 'other');
  await mkdir(otherDir, { mode: 0o755 });
  await writeFile(join(otherDir, VMWRAPPER_FILE_NAME), '#!/bin/sh\necho mine\n', { mode: 0o755 });
  await assert.rejects(installVmwrapper(otherDir, { qemuPath: fakeQemu }), FailedPreconditionError);
  assert.equal(await readFile(join(otherDir, VMWRAPPER_FILE_NAME), 'utf8'), '#!/bin/sh\necho mine\n');
  await assert.rejects(installVmwrapper(join(root, 'nq'), { qemuPath: join(root, 'no-such-qemu') }), FailedPreconditionError);
});

test('start latency: the launcher adds a few exec()s in front of the emulator', async (t) => {
  // /usr/bin/true as the "emulator" isolates the launcher's own cost from QEMU's start-up.
  const benchDir = join(root, 'bench');
  const benchLauncher = await installVmwrapper(benchDir, { qemuPath: '/usr/bin/true' });
  const time = async (file: string, netnsValue?: string): Promise<number> => {
    const started = performance.now();
    const r = await runLauncher(file, [], netnsValue);
    assert.equal(r.exitCode, 0, r.stderr);
    return performance.now() - started;
  };
  const direct: number[] = [];
  const plain: number[] = [];
  const inNetns: number[] = [];
  for (let i = 0; i < 30; i++) {
    direct.push(await time('/usr/bin/true'));
    plain.push(await time(benchLauncher));
    inNetns.push(await time(benchLauncher, netnsPath));
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const overhead = median(inNetns) - median(direct);
  t.diagnostic(
    `median spawn-to-exit: true ${median(direct).toFixed(1)} ms, launcher ${median(plain).toFixed(1)} ms, ` +
      `launcher+netns ${median(inNetns).toFixed(1)} ms (overhead ${overhead.toFixed(1)} ms)`,
  );
  // A generous bound: the chain is sh + nsenter + setpriv, not a runtime that starts up.
  assert.ok(overhead < 250, `launcher overhead ${overhead.toFixed(1)} ms`);
});
