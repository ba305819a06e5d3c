import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prepareContainerLogDir } from '../../../src/console/log_dir.js';
import { InvalidArgumentError } from '../../../src/errors.js';

const root = mkdtempSync(join(tmpdir(), 'vmlet-logdir-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('the directories of log_path are made below log_directory (itself made when missing)', async () => {
  const logDir = join(root, 'pods', 'ns_pod_uid');
  await prepareContainerLogDir(logDir, join('vm', '0.log'));
  assert.ok(lstatSync(join(logDir, 'vm')).isDirectory());
  await prepareContainerLogDir(logDir, join('vm', '1.log')); // again: exists, fine
  await prepareContainerLogDir(logDir, 'flat.log');
  assert.deepEqual(readdirSync(logDir), ['vm']);
});

test('log_directory may be a symlink (a node moving /var/log/pods to another disk): followed', async () => {
  const real = join(root, 'other-disk');
  mkdirSync(real);
  symlinkSync(real, join(root, 'linked-pods'));
  await prepareContainerLogDir(join(root, 'linked-pods'), join('vm', '0.log'));
  assert.ok(lstatSync(join(real, 'vm')).isDirectory());
});

test('a symlink below log_directory is refused with INVALID_ARGUMENT naming log_path; nothing made through it', async () => {
  const logDir = join(root, 'hostile');
  const outside = join(root, 'outside');
  mkdirSync(logDir);
  mkdirSync(outside);
  symlinkSync(outside, join(logDir, 'vm'));
  await assert.rejects(prepareContainerLogDir(logDir, join('vm', 'sub', '0.log')), (err: unknown) => err instanceof InvalidArgumentError && /config\.log_path: .*vm is a symlink/.test(err.message));
  assert.deepEqual(readdirSync(outside), []);
});

test('a file where a directory of log_path should be is refused', async () => {
  const logDir = join(root, 'file-in-way');
  mkdirSync(logDir);
  writeFileSync(join(logDir, 'vm'), '');
  await assert.rejects(prepareContainerLogDir(logDir, join('vm', '0.log')), /config\.log_path: .*vm exists and is not a directory/);
});
