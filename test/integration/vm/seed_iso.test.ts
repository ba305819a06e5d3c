import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FailedPreconditionError, InternalError, InvalidArgumentError } from '../../../src/errors.js';
import { parseVmAnnotations } from '../../../src/vm/annotations.js';
import { buildCloudInit, buildConfigDrive, type CloudInitInput } from '../../../src/vm/cloudinit.js';
import { writeSeedIso } from '../../../src/vm/seed_iso.js';
import { threeNicNetwork } from '../../unit/vm/fixtures.js';

const run = promisify(execFile);

function input(): CloudInitInput {
  return {
    instanceId: 'seed-test.default',
    hostname: 'seed-test',
    annotations: parseVmAnnotations({ VirtletSSHKeys: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey test@host' }),
    env: [{ name: 'GREETING', value: "it's here" }],
    network: threeNicNetwork(),
  };
}

async function scratchDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-seed-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function volumeId(iso: string): Promise<string> {
  const { stdout } = await run('isoinfo', ['-d', '-i', iso]);
  const m = /^Volume id: (.*)$/m.exec(stdout);
  assert.ok(m, `no volume id in isoinfo output:\n${stdout}`);
  return m[1]!.trim();
}

/** File paths in the ISO as Rock Ridge names (what a Linux guest sees). */
async function rockRidgeFiles(iso: string): Promise<string[]> {
  const { stdout } = await run('isoinfo', ['-R', '-f', '-i', iso]);
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .sort();
}

async function extract(iso: string, path: string): Promise<string> {
  const { stdout } = await run('isoinfo', ['-R', '-i', iso, '-x', path], { maxBuffer: 1024 * 1024 });
  return stdout;
}

test('NoCloud seed ISO: volume id cidata, the three documents at the root, byte for byte', async (t) => {
  const dir = await scratchDir(t);
  const iso = join(dir, 'seed.iso');
  const docs = buildCloudInit(input());
  await writeSeedIso(iso, docs);

  assert.equal(await volumeId(iso), 'cidata');
  assert.deepEqual(await rockRidgeFiles(iso), ['/meta-data', '/network-config', '/user-data']);
  assert.equal(await extract(iso, '/meta-data'), docs.metaData);
  assert.equal(await extract(iso, '/user-data'), docs.userData);
  assert.equal(await extract(iso, '/network-config'), docs.networkConfig);
  // Joliet names too (Windows-style readers, cloudbase-init).
  const { stdout: joliet } = await run('isoinfo', ['-J', '-f', '-i', iso]);
  assert.match(joliet, /\/network-config/);
  assert.equal((await stat(iso)).mode & 0o777, 0o644);
  assert.deepEqual(await readdir(dir), ['seed.iso'], 'no temp files left beside the ISO');
});

test('config drive ISO: volume id config-2 and the openstack/latest tree', async (t) => {
  const dir = await scratchDir(t);
  const iso = join(dir, 'config-2.iso');
  const docs = buildConfigDrive(input());
  await writeSeedIso(iso, docs);

  assert.equal(await volumeId(iso), 'config-2');
  const files = await rockRidgeFiles(iso);
  for (const f of ['/openstack/latest/meta_data.json', '/openstack/latest/user_data', '/openstack/latest/network_data.json']) {
    assert.ok(files.includes(f), `${f} missing from ${files.join(', ')}`);
  }
  assert.equal(await extract(iso, '/openstack/latest/meta_data.json'), docs.metaData);
  assert.equal(await extract(iso, '/openstack/latest/network_data.json'), docs.networkData);
  assert.equal(await extract(iso, '/openstack/latest/user_data'), docs.userData);
  assert.deepEqual(await readdir(dir), ['config-2.iso']);
});

test('rewriting replaces the ISO whole', async (t) => {
  const dir = await scratchDir(t);
  const iso = join(dir, 'seed.iso');
  await writeSeedIso(iso, buildCloudInit(input()));
  const second = input();
  second.hostname = 'renamed';
  const docs = buildCloudInit(second);
  await writeSeedIso(iso, docs);
  assert.equal(await extract(iso, '/meta-data'), docs.metaData);
  assert.deepEqual(await readdir(dir), ['seed.iso']);
});

test('a failing genisoimage leaves the old ISO in place and no temp files', async (t) => {
  const dir = await scratchDir(t);
  const iso = join(dir, 'seed.iso');
  await writeFile(iso, 'previous seed');
  await assert.rejects(writeSeedIso(iso, buildCloudInit(input()), { genisoimage: '/bin/false' }), InternalError);
  assert.equal(await readFile(iso, 'utf8'), 'previous seed');
  assert.deepEqual(await readdir(dir), ['seed.iso']);
});

test('a missing genisoimage is a failed precondition; nothing is left behind', async (t) => {
  const dir = await scratchDir(t);
  await assert.rejects(
    writeSeedIso(join(dir, 'seed.iso'), buildCloudInit(input()), { genisoimage: join(dir, 'no-such-genisoimage') }),
    FailedPreconditionError,
  );
  assert.deepEqual(await readdir(dir), []);
});

test('a missing target directory is a failed precondition (the caller owns its permissions)', async (t) => {
  const dir = await scratchDir(t);
  await assert.rejects(writeSeedIso(join(dir, 'absent', 'seed.iso'), buildCloudInit(input())), FailedPreconditionError);
  assert.deepEqual(await readdir(dir), []);
});

test('relative or unnormalized target paths are refused', async () => {
  for (const p of ['seed.iso', '/tmp/../tmp/seed.iso', '/tmp/seed.iso/', '/tmp/a\nb.iso']) {
    await assert.rejects(writeSeedIso(p, buildCloudInit(input())), InvalidArgumentError, p);
  }
});
