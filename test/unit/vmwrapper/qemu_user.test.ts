import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FailedPreconditionError, InvalidArgumentError } from '../../../src/errors.js';
import { findPasswdUser, resolveQemuUser } from '../../../src/vmwrapper/qemu_user.js';
import { canTraverse } from '../../../src/vmwrapper/qemu_access.js';

const PASSWD = [
  'root:x:0:0:root:/root:/bin/bash',
  'vmlet-qemu:x:999:995:vmlet QEMU processes:/nonexistent:/usr/sbin/nologin',
  'vmlet-qemu-old:x:998:994::/nonexistent:/usr/sbin/nologin',
  'toor:x:0:0::/root:/bin/sh',
  'broken:x:abc:1::/:/bin/sh',
  '',
].join('\n');

test('findPasswdUser: exact name match, uid and primary gid', () => {
  assert.deepEqual(findPasswdUser(PASSWD, 'vmlet-qemu'), { name: 'vmlet-qemu', uid: 999, gid: 995 });
  assert.equal(findPasswdUser(PASSWD, 'vmlet'), undefined);
  assert.equal(findPasswdUser(PASSWD, 'nobody'), undefined);
  assert.throws(() => findPasswdUser(PASSWD, 'broken'), InvalidArgumentError);
});

test('resolveQemuUser: root means no uid drop; a missing or uid-0 user fails the start with the fix named', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-qemu-user-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const passwd = join(dir, 'passwd');
  writeFileSync(passwd, PASSWD);
  assert.equal(resolveQemuUser('root', passwd), undefined);
  assert.deepEqual(resolveQemuUser('vmlet-qemu', passwd), { name: 'vmlet-qemu', uid: 999, gid: 995 });
  assert.throws(() => resolveQemuUser('nobody', passwd), (err: unknown) => err instanceof FailedPreconditionError && /does not exist.*--qemu-user root/.test(err.message));
  assert.throws(() => resolveQemuUser('toor', passwd), (err: unknown) => err instanceof FailedPreconditionError && /uid 0/.test(err.message));
  assert.throws(() => resolveQemuUser('../etc', passwd), InvalidArgumentError);
  assert.throws(() => resolveQemuUser('vmlet-qemu', join(dir, 'missing')), FailedPreconditionError);
});

test('canTraverse: owner bits for the owner, group bits for the group, other bits for the rest', () => {
  const user = { name: 'q', uid: 999, gid: 995 };
  assert.equal(canTraverse({ uid: 0, gid: 0, mode: 0o40700 }, user), false);
  assert.equal(canTraverse({ uid: 0, gid: 0, mode: 0o40711 }, user), true);
  assert.equal(canTraverse({ uid: 0, gid: 995, mode: 0o40710 }, user), true);
  assert.equal(canTraverse({ uid: 0, gid: 995, mode: 0o40701 }, user), false, 'group bits decide for a group member');
  assert.equal(canTraverse({ uid: 999, gid: 0, mode: 0o40011 }, user), false, 'owner bits decide for the owner');
  assert.equal(canTraverse({ uid: 999, gid: 0, mode: 0o40100 }, user), true);
});
