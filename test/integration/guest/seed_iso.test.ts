import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FailedPreconditionError, InvalidArgumentError } from '../../../src/errors.js';
import { parseVmAnnotations } from '../../../src/guest/annotations.js';
import { buildCloudInit, buildConfigDrive, type CloudInitInput } from '../../../src/guest/cloudinit.js';
import { seedIsoImage, writeSeedIso } from '../../../src/guest/seed_iso.js';
import { buildIso9660 } from '../../../src/guest/iso9660.js';
import { assertGolden } from '../../helpers/golden.js';
import { threeNicNetwork } from '../../unit/guest/fixtures.js';

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

/** File paths in the ISO as Joliet names (what a Linux guest sees: the image has no Rock Ridge). */
async function jolietFiles(iso: string): Promise<string[]> {
  const { stdout } = await run('isoinfo', ['-J', '-f', '-i', iso]);
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .sort();
}

async function extract(iso: string, path: string): Promise<string> {
  const { stdout } = await run('isoinfo', ['-J', '-i', iso, '-x', path], { maxBuffer: 1024 * 1024 });
  return stdout;
}

test('NoCloud seed ISO: volume id cidata, the three documents at the root, byte for byte', async (t) => {
  const dir = await scratchDir(t);
  const iso = join(dir, 'seed.iso');
  const docs = buildCloudInit(input());
  await writeSeedIso(iso, docs);

  assert.equal(await volumeId(iso), 'cidata');
  assert.deepEqual(await jolietFiles(iso), ['/meta-data', '/network-config', '/user-data']);
  assert.equal(await extract(iso, '/meta-data'), docs.metaData);
  assert.equal(await extract(iso, '/user-data'), docs.userData);
  assert.equal(await extract(iso, '/network-config'), docs.networkConfig);
  // The label as blkid (and so cloud-init's device search) reads it.
  const { stdout: label } = await run('blkid', ['-o', 'value', '-s', 'LABEL', iso]);
  assert.equal(label.trim(), 'cidata');
  assert.equal((await stat(iso)).mode & 0o777, 0o644);
  assert.deepEqual(await readdir(dir), ['seed.iso'], 'no temp files left beside the ISO');
});

test('config drive ISO: volume id config-2 and the openstack/latest tree', async (t) => {
  const dir = await scratchDir(t);
  const iso = join(dir, 'config-2.iso');
  const docs = buildConfigDrive(input());
  await writeSeedIso(iso, docs);

  assert.equal(await volumeId(iso), 'config-2');
  const files = await jolietFiles(iso);
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

test('the image is a pure function of the documents and the date (golden), and refuses unusable names', () => {
  const date = new Date(Date.UTC(2026, 11, 5, 12, 34, 56, 780));
  // The golden files stop before the 150 zero sectors that end every image.
  const withoutPad = (image: Buffer): Buffer => {
    const pad = 150 * 2048;
    assert.ok(image.subarray(image.length - pad).every((b) => b === 0), 'the image ends in 150 zero sectors');
    return image.subarray(0, image.length - pad);
  };
  const docs = buildCloudInit(input());
  assertGolden('guest/seed-nocloud.iso', withoutPad(seedIsoImage(docs, date)));
  assert.deepEqual(seedIsoImage(docs, date), seedIsoImage(docs, date));
  const drive = buildConfigDrive(input());
  assertGolden('guest/seed-configdrive.iso', withoutPad(seedIsoImage(drive, date)));
  const one = (path: string) => buildIso9660([{ path, content: Buffer.from('x') }], 'cidata', date);
  assert.throws(() => one('../etc/passwd'), InvalidArgumentError);
  assert.throws(() => one('a//b'), InvalidArgumentError);
  assert.throws(() => one('a/\u0000'), InvalidArgumentError);
  assert.throws(() => buildIso9660([{ path: 'a', content: Buffer.from('1') }, { path: 'a', content: Buffer.from('2') }], 'cidata', date), /twice/);
  assert.throws(() => buildIso9660([{ path: 'a', content: Buffer.from('1') }, { path: 'a/b', content: Buffer.from('2') }], 'cidata', date), /is a file/);
  assert.throws(() => buildIso9660([], 'ci data', date), /volume id/);
});

test('a directory of more than one sector and files of many sectors read back whole', async (t) => {
  const dir = await scratchDir(t);
  const iso = join(dir, 'big.iso');
  const files = Array.from({ length: 60 }, (_, i) => ({ path: `d/file-with-a-long-name-${String(i).padStart(3, '0')}`, content: Buffer.alloc(3000 + i, 97 + (i % 26)) }));
  await writeFile(iso, buildIso9660(files, 'cidata', new Date()));
  const listed = await jolietFiles(iso);
  for (const f of files) assert.ok(listed.includes(`/${f.path}`), `${f.path} missing`);
  assert.equal(await extract(iso, '/d/file-with-a-long-name-059'), files[59]!.content.toString());
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
