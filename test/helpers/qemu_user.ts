/**
 * Checks on a running vmlet QEMU's identity: the uid/gid it runs as (from /proc/<pid>/status) and
 * what a process with exactly those ids may read on this host (a helper started with setpriv).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveQemuUser } from '../../src/vmwrapper/qemu_user.js';

/** The pid libvirt recorded for a running domain. */
export function domainPid(domainName: string): number {
  return Number(readFileSync(`/run/libvirt/qemu/${domainName}.pid`, 'utf8').trim());
}

function statusIds(pid: number): { uid: number[]; gid: number[]; groups: string; capEff: string } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(status)?.[1]?.trim() ?? '';
  return {
    uid: field('Uid').split(/\s+/).map(Number),
    gid: field('Gid').split(/\s+/).map(Number),
    groups: field('Groups'),
    capEff: field('CapEff'),
  };
}

/** Exit status and stderr of `cat path` run with exactly uid/gid and no groups. */
function catAs(uid: number, gid: number, path: string): { status: number | null; stderr: string } {
  const r = spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--', 'cat', path], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

/**
 * Asserts that domain `domainName`'s QEMU runs as --qemu-user's uid/gid (real, effective, saved,
 * filesystem), with no groups and no capabilities, and that those ids cannot read a root-only
 * (0600) file while they can read `readablePath` (a file QEMU needs, so the helper itself works).
 */
export function assertQemuUnprivileged(domainName: string, readablePath: string, qemuUserName = 'vmlet-qemu'): void {
  const user = resolveQemuUser(qemuUserName);
  assert.ok(user, 'a QEMU user, not root');
  const ids = statusIds(domainPid(domainName));
  assert.deepEqual(ids.uid, [user.uid, user.uid, user.uid, user.uid], 'QEMU Uid (real, effective, saved, fs)');
  assert.deepEqual(ids.gid, [user.gid, user.gid, user.gid, user.gid], 'QEMU Gid');
  assert.equal(ids.groups, '', 'no supplementary groups');
  assert.equal(ids.capEff, '0000000000000000');
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-rootonly-'));
  try {
    const secret = join(dir, 'secret');
    writeFileSync(secret, 'root only\n', { mode: 0o600 });
    // The directory is 0700 root by mkdtemp; open it up so only the file's own mode decides.
    spawnSync('chmod', ['0755', dir]);
    const denied = catAs(user.uid, user.gid, secret);
    assert.notEqual(denied.status, 0, 'a 0600 root file must not be readable by the QEMU user');
    assert.match(denied.stderr, /Permission denied/);
    assert.notEqual(catAs(user.uid, user.gid, '/etc/shadow').status, 0, '/etc/shadow');
    assert.equal(catAs(user.uid, user.gid, readablePath).status, 0, `the QEMU user reads ${readablePath}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
