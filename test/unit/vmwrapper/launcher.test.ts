import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertGolden } from '../../helpers/golden.js';
import { InvalidArgumentError } from '../../../src/errors.js';
import { LAUNCHER_MARKER, PRIVILEGE_DROP_ARGS, renderLauncher, type LauncherOptions } from '../../../src/vmwrapper/launcher.js';

const options: LauncherOptions = {
  qemuPath: '/usr/bin/qemu-system-x86_64',
  nsenterPath: '/usr/bin/nsenter',
  setprivPath: '/usr/bin/setpriv',
  qemuIdentity: '/usr/bin/qemu-system-x86_64 size=19203456 mtime=1729500000000000000 ino=1234',
};

test('the launcher script matches its golden file', () => {
  assertGolden('vmwrapper/launcher.sh', renderLauncher(options));
});

test('the launcher carries its marker on line 2 and the QEMU identity', () => {
  const lines = renderLauncher(options).split('\n');
  assert.equal(lines[0], '#!/bin/sh');
  assert.ok(lines[1]!.startsWith(LAUNCHER_MARKER));
  assert.ok(lines.includes(`# qemu: ${options.qemuIdentity}`));
});

test('every exec of QEMU goes through the full privilege drop', () => {
  const script = renderLauncher(options);
  const execs = script.split('\n').filter((l) => l.trimStart().startsWith('exec '));
  assert.equal(execs.length, 2);
  for (const line of execs) {
    assert.ok(line.includes(`/usr/bin/setpriv ${PRIVILEGE_DROP_ARGS.join(' ')} -- /usr/bin/qemu-system-x86_64 "$@"`), line);
  }
  assert.ok(execs[1]!.includes('/usr/bin/nsenter --net="$ns" --'), execs[1]);
});

test('a different QEMU identity changes the script (so libvirt re-probes after an upgrade)', () => {
  assert.notEqual(renderLauncher(options), renderLauncher({ ...options, qemuIdentity: `${options.qemuIdentity}x` }));
});

test('paths that would need shell quoting or are not absolute and normalized are refused', () => {
  const bad = ['qemu', '/usr/bin/../bin/qemu', '/usr/bin/qemu ', '/usr/bin/q$emu', '/usr/bin/q"emu', '/usr/bin/q`x`', '/usr/bin/q\nx', '/usr/bin/', '//usr/bin/qemu', ''];
  for (const path of bad) {
    for (const key of ['qemuPath', 'nsenterPath', 'setprivPath'] as const) {
      assert.throws(() => renderLauncher({ ...options, [key]: path }), InvalidArgumentError, `${key}=${JSON.stringify(path)}`);
    }
  }
  for (const identity of ['', 'a\nb', 'x;rm', 'x$(y)', 'x'.repeat(513)]) {
    assert.throws(() => renderLauncher({ ...options, qemuIdentity: identity }), InvalidArgumentError, JSON.stringify(identity));
  }
});

const withUser: LauncherOptions = { ...options, qemuUser: { uid: 64100, gid: 64101 } };

test('with a QEMU user the launcher matches its golden file', () => {
  assertGolden('vmwrapper/launcher-qemu-user.sh', renderLauncher(withUser));
});

test("with a QEMU user the pod's QEMU drops to that uid/gid after nsenter; the capability probe stays uid 0", () => {
  const script = renderLauncher(withUser);
  const execs = script.split('\n').filter((l) => l.trimStart().startsWith('exec '));
  assert.equal(execs.length, 2);
  assert.ok(execs[0]!.includes(`/usr/bin/setpriv ${PRIVILEGE_DROP_ARGS.join(' ')} -- /usr/bin/qemu-system-x86_64 "$@"`), execs[0]);
  assert.ok(!execs[0]!.includes('--reuid'), execs[0]);
  assert.ok(
    execs[1]!.includes(`/usr/bin/nsenter --net="$ns" -- /usr/bin/setpriv --reuid=64100 --regid=64101 ${PRIVILEGE_DROP_ARGS.join(' ')} -- /usr/bin/qemu-system-x86_64 "$@"`),
    execs[1],
  );
  // The grants run (as root) right before that exec, and only in the pod branch.
  const lines = script.split('\n');
  assert.equal(lines[lines.indexOf(execs[1]!) - 1], 'grant "$@"');
  assert.ok(lines.includes('# qemu user: uid 64100 gid 64101'));
  // Changing the user changes the script, so the installer rewrites it.
  assert.notEqual(script, renderLauncher({ ...options, qemuUser: { uid: 64100, gid: 64102 } }));
});

test('root or invalid ids as QEMU user are refused', () => {
  for (const qemuUser of [{ uid: 0, gid: 5 }, { uid: 5, gid: 0 }, { uid: -1, gid: 5 }, { uid: 1.5, gid: 5 }, { uid: 2 ** 32, gid: 5 }]) {
    assert.throws(() => renderLauncher({ ...options, qemuUser }), InvalidArgumentError, JSON.stringify(qemuUser));
  }
});
