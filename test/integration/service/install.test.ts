/**
 * vmlet as a service: scripts/install.sh --service / --uninstall against a temp root (never the
 * real /etc), the unit checked by `systemd-analyze verify`, and the unit's start/stop/restart
 * sequence run by a small supervisor (no systemd as PID 1 here) around a real `vmlet serve`.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, mkdirSync, writeFileSync, readFileSync, readdirSync, lstatSync, readlinkSync, copyFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, criClient } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { waitFor } from '../../helpers/e2e.js';
import { parseServiceUnit, UnitSupervisor } from '../../helpers/unit_supervisor.js';
import { loadConfig } from '../../../src/config/load.js';

const INSTALL = join(REPO_ROOT, 'scripts', 'install.sh');
const CONFIGURE = join(REPO_ROOT, 'scripts', 'configure-libvirt.sh');
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

/** Every path under `root` with its type, mode and content hash (or link target). */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const st = lstatSync(p);
      const rel = p.slice(root.length);
      if (st.isSymbolicLink()) out[rel] = `link ${readlinkSync(p)}`;
      else if (st.isDirectory()) {
        out[rel] = `dir ${(st.mode & 0o7777).toString(8)}`;
        walk(p);
      } else out[rel] = `file ${(st.mode & 0o7777).toString(8)} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
    }
  };
  walk(root);
  return out;
}

function install(args: string[]): string {
  const r = spawnSync('bash', [INSTALL, ...args], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `install.sh ${args.join(' ')} failed:\n${r.stderr}`);
  return r.stderr;
}

/** A root with a qemu.conf as Debian ships it plus settings of the admin's own that vmlet's block overrides. */
function hostLikeRoot(): string {
  const root = tempDir('vmlet-install-root-');
  mkdirSync(join(root, 'etc', 'libvirt'), { recursive: true });
  const conf = join(root, 'etc', 'libvirt', 'qemu.conf');
  copyFileSync('/etc/libvirt/qemu.conf', conf);
  // The host's file may carry vmlet's block already: start from the file without it.
  execFileSync('bash', [CONFIGURE, '--qemu-conf', conf, '--remove'], { stdio: 'ignore' });
  writeFileSync(conf, readFileSync(conf, 'utf8') + 'user = "libvirt-qemu"\ncgroup_device_acl = [\n    "/dev/null", "/dev/kvm"\n]\n');
  execFileSync('chmod', ['0600', conf]);
  return root;
}

test('install --service adds the unit, binary link, config and default CNI network; uninstall leaves every file as it was', () => {
  const root = hostLikeRoot();
  const before = snapshot(root);
  install(['--service', '--root', root]);
  const unit = readFileSync(join(root, 'etc/systemd/system/vmlet.service'), 'utf8');
  assert.equal(unit, readFileSync(join(REPO_ROOT, 'deploy/systemd/vmlet.service'), 'utf8'));
  assert.equal(readlinkSync(join(root, 'usr/local/bin/vmlet')), join(REPO_ROOT, 'bin', 'vmlet'));
  assert.ok(existsSync(join(root, 'etc/cni/net.d/10-vmlet.conflist')));
  const qemu = readFileSync(join(root, 'etc/libvirt/qemu.conf'), 'utf8');
  assert.match(qemu, /# BEGIN vmlet managed block/);
  assert.match(qemu, /^#vmlet-disabled# user = "libvirt-qemu"$/m);
  // The default config is a valid vmlet config.
  const config = loadConfig({ file: join(root, 'etc/vmlet/config.yaml') });
  assert.equal(config.socket, '/run/vmlet/vmlet.sock');
  assert.equal(config.containerRuntimeEndpoint, '');
  // A second install changes nothing.
  const installed = snapshot(root);
  install(['--service', '--root', root]);
  assert.deepEqual(snapshot(root), installed);

  install(['--uninstall', '--root', root]);
  assert.deepEqual(snapshot(root), before);
});

test('install keeps an existing CNI network and config file, and uninstall leaves them', () => {
  const root = hostLikeRoot();
  mkdirSync(join(root, 'etc/cni/net.d'), { recursive: true });
  writeFileSync(join(root, 'etc/cni/net.d/05-cluster.conflist'), '{"cniVersion":"1.0.0","name":"cluster","plugins":[{"type":"bridge"}]}\n');
  mkdirSync(join(root, 'etc/vmlet'), { recursive: true });
  writeFileSync(join(root, 'etc/vmlet/config.yaml'), 'log-level: debug\n');
  const before = snapshot(root);
  install(['--service', '--root', root]);
  assert.ok(!existsSync(join(root, 'etc/cni/net.d/10-vmlet.conflist')), 'no default network beside an existing one');
  assert.equal(readFileSync(join(root, 'etc/vmlet/config.yaml'), 'utf8'), 'log-level: debug\n');
  install(['--uninstall', '--root', root]);
  assert.deepEqual(snapshot(root), before);
});

test('systemd-analyze verify accepts the installed unit (libvirtd/virtlogd units from Debian\'s packages)', () => {
  const root = hostLikeRoot();
  install(['--service', '--root', root]);
  // The unit names /usr/local/bin/vmlet of the target system; verify it against the temp root's link.
  const dir = tempDir('vmlet-verify-');
  const unit = readFileSync(join(root, 'etc/systemd/system/vmlet.service'), 'utf8').replace('/usr/local/bin/vmlet', join(root, 'usr/local/bin/vmlet'));
  writeFileSync(join(dir, 'vmlet.service'), unit);
  const r = spawnSync('systemd-analyze', ['verify', join(dir, 'vmlet.service')], { encoding: 'utf8' });
  assert.equal(r.status, 0, `systemd-analyze verify:\n${r.stdout}${r.stderr}`);
  assert.equal(r.stderr.trim(), '', 'no warnings');
  // A broken unit fails the same check, so the check can fail.
  writeFileSync(join(dir, 'broken.service'), unit.replace(join(root, 'usr/local/bin/vmlet'), join(root, 'usr/local/bin/missing')).replace('KillMode=process', 'KillMode=processes'));
  const broken = spawnSync('systemd-analyze', ['verify', join(dir, 'broken.service')], { encoding: 'utf8' });
  assert.notEqual(broken.status, 0);
  assert.match(broken.stderr, /kill mode/);
  const parsed = parseServiceUnit(unit);
  assert.deepEqual(parsed.sections.Unit!.Requires, ['libvirtd.service virtlogd.service']);
  assert.match(parsed.sections.Unit!.After![0]!, /libvirtd\.service virtlogd\.service/);
  assert.equal(parsed.killMode, 'process');
  assert.equal(parsed.restart, 'on-failure');
  install(['--uninstall', '--root', root]);
});

function childrenOf(pid: number): number[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ')[1] === String(pid);
    } catch {
      return false;
    }
  }).map(Number);
}
const alive = (pid: number) => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z');

test('the unit\'s sequence under a supervisor: start serves, stop exits 0 and takes netd along, a crash restarts after RestartSec, a stop is not restarted', { timeout: 300_000 }, async () => {
  await ensureLibvirtd();
  const unit = parseServiceUnit(readFileSync(join(REPO_ROOT, 'deploy/systemd/vmlet.service'), 'utf8'));
  const dir = tempDir('vmlet-supervised-');
  // mkdtemp makes it 0700; QEMU's user (--qemu-user) must traverse it to the state and image dirs.
  chmodSync(dir, 0o711);
  const socket = join(dir, 'run', 'vmlet.sock');
  const configPath = join(dir, 'config.yaml');
  mkdirSync(join(dir, 'cni'));
  writeFileSync(configPath, [
    `socket: ${socket}`, `state-dir: ${join(dir, 'state')}`, `cni-conf-dir: ${join(dir, 'cni')}`,
    `image-translations-dir: ${join(dir, 'tr')}`, 'vm-warm-pool: 0', 'kvm: off', 'log-level: info', '',
  ].join('\n'));
  const supervised = { ...unit, execStart: unit.execStart.map((a) => (a === '/etc/vmlet/config.yaml' ? configPath : a)) };
  assert.deepEqual(unit.execStart.slice(1), ['serve', '--config', '/etc/vmlet/config.yaml']);
  const sup = new UnitSupervisor(supervised, [process.execPath, '--import', 'tsx', join(REPO_ROOT, 'src', 'main.ts')], { ...process.env });
  const serving = async () => {
    const { runtime, image } = criClient(socket);
    try {
      return (await runtime.Version!({}, { deadlineMs: 2000 })).runtime_name === 'vmlet' ? true : undefined;
    } catch {
      return undefined;
    } finally {
      runtime.close();
      image.close();
    }
  };
  const netdOf = async (pid: number) => waitFor('netd child', 30_000, () => childrenOf(pid)[0]);
  try {
    sup.start();
    await waitFor('vmlet serving', 60_000, serving);
    const first = sup.child!.pid!;
    const netd1 = await netdOf(first);

    // restart = stop + start: a clean exit (0) on the stop signal, its netd gone with it.
    await sup.restart();
    assert.deepEqual(sup.events.filter((e) => e.pid === first && e.event === 'exited').map((e) => e.code), [0]);
    assert.ok(!sup.events.some((e) => e.event === 'stop-kill'), `stopped within TimeoutStopSec=${unit.timeoutStopSec}`);
    await waitFor('netd of the stopped serve gone', 10_000, () => (!alive(netd1) ? true : undefined));
    await waitFor('vmlet serving after restart', 60_000, serving);

    // A crash (SIGKILL of the main process only, as KillMode=process leaves the rest): restarted after RestartSec.
    const second = sup.child!.pid!;
    const netd2 = await netdOf(second);
    const killedAt = Date.now();
    process.kill(second, 'SIGKILL');
    await waitFor('restarted after the crash', 60_000, () => (sup.child!.pid !== second ? true : undefined));
    const restartedAt = sup.events.filter((e) => e.event === 'started').at(-1)!.at;
    assert.ok(restartedAt - killedAt >= unit.restartSec * 1000 - 50, 'restart waited RestartSec');
    // The orphaned netd notices its serve is gone and exits by itself.
    await waitFor('netd of the crashed serve gone', 15_000, () => (!alive(netd2) ? true : undefined));
    await waitFor('vmlet serving after the crash', 60_000, serving);

    // stop: exit 0, and nothing restarts it.
    const third = sup.child!.pid!;
    await sup.stop();
    await new Promise((r) => setTimeout(r, unit.restartSec * 1000 + 500));
    assert.equal(sup.child!.pid, third);
    assert.equal(sup.events.filter((e) => e.event === 'exited').at(-1)!.code, 0);
    assert.ok(!existsSync(socket), 'the socket is removed on stop');
  } finally {
    await sup.stop();
  }
});
