/**
 * scripts/configure-libvirt.sh on real copies of qemu.conf (--no-restart: libvirtd is not touched
 * here; the domain test runs the script for real). Files live in a temp dir removed afterwards.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const script = join(dirname(fileURLToPath(import.meta.url)), '../../../scripts/configure-libvirt.sh');
const dirs: string[] = [];

after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function conf(content: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-test-qemuconf-'));
  dirs.push(dir);
  const path = join(dir, 'qemu.conf');
  await writeFile(path, content);
  await chmod(path, 0o600);
  return path;
}

async function configure(path: string, ...extra: string[]): Promise<string> {
  const { stderr } = await execFileAsync(script, ['--qemu-conf', path, '--no-restart', ...extra], { timeout: 30_000 });
  return stderr;
}

/** Active (uncommented) assignments of `key`, as libvirt's parser would see them. */
function active(text: string, key: string): string[] {
  return text.split('\n').filter((l) => new RegExp(`^\\s*${key}\\s*=`).test(l));
}

const BEGIN = '# BEGIN vmlet managed block';
const END = '# END vmlet managed block';

test('adds the managed block once; a second run changes nothing', async () => {
  const original = '# defaults\n#user = "libvirt-qemu"\nvnc_listen = "0.0.0.0"\n';
  const path = await conf(original);
  assert.match(await configure(path), /settings written/);
  const first = await readFile(path, 'utf8');
  assert.ok(first.startsWith(original), 'the rest of the file is kept');
  assert.deepEqual(active(first, 'user'), ['user = "+0"']);
  assert.deepEqual(active(first, 'group'), ['group = "+0"']);
  assert.equal(active(first, 'cgroup_device_acl').length, 1);
  assert.ok(first.includes('"/dev/net/tun"'));
  assert.ok(first.includes('"/dev/kvm"'), "libvirt's default devices stay allowed");
  assert.deepEqual(active(first, 'capability_filters'), ['capability_filters = [ "cpu-unavailable-features" ]']);
  const mtime = (await stat(path)).mtimeMs;
  assert.match(await configure(path), /already in place/);
  assert.equal(await readFile(path, 'utf8'), first);
  assert.equal((await stat(path)).mtimeMs, mtime);
  assert.equal((await stat(path)).mode & 0o777, 0o600, 'mode kept');
});

test('other active settings of the same keys are disabled, multi-line lists included', async () => {
  const path = await conf(
    [
      'user = "libvirt-qemu"',
      '  group="kvm"',
      'cgroup_device_acl = [',
      '    "/dev/null",',
      '    "/dev/kvm"',
      ']',
      'username_lookalike = 1',
      'security_driver = "none"',
      '',
    ].join('\n'),
  );
  await configure(path);
  const text = await readFile(path, 'utf8');
  assert.deepEqual(active(text, 'user'), ['user = "+0"']);
  assert.deepEqual(active(text, 'group'), ['group = "+0"']);
  assert.equal(active(text, 'cgroup_device_acl').length, 1);
  // No stray list lines left active outside the block.
  const outside = text.slice(0, text.indexOf(BEGIN));
  assert.ok(!/^\s*"\/dev\/(null|kvm)"/m.test(outside), outside);
  assert.ok(!/^\]/m.test(outside), outside);
  assert.deepEqual(active(text, 'username_lookalike'), ['username_lookalike = 1']);
  assert.deepEqual(active(text, 'security_driver'), ['security_driver = "none"']);
});

test('an edited managed block is replaced in place, not appended again', async () => {
  const path = await conf(`a = 1\n${BEGIN}: old\nuser = "nobody"\n${END}\nb = 2\n`);
  await configure(path);
  const text = await readFile(path, 'utf8');
  assert.equal(text.split(BEGIN).length, 2, 'exactly one block');
  assert.ok(text.startsWith(`a = 1\n${BEGIN}`));
  assert.ok(text.endsWith(`${END}\nb = 2\n`));
  assert.deepEqual(active(text, 'user'), ['user = "+0"']);
});

test('an unterminated block is an error and leaves the file alone', async () => {
  const broken = `${BEGIN}\nuser = "x"\n`;
  const path = await conf(broken);
  await assert.rejects(configure(path));
  assert.equal(await readFile(path, 'utf8'), broken);
});

test('--keep-cpu-feature-probe leaves capability_filters to the file; the default replaces it', async () => {
  const path = await conf('a = 1\ncapability_filters = [ "other" ]\nb = 2\n');
  await configure(path, '--keep-cpu-feature-probe');
  const kept = await readFile(path, 'utf8');
  assert.deepEqual(active(kept, 'capability_filters'), ['capability_filters = [ "other" ]'], "the file's own setting stays in force");
  assert.deepEqual(active(kept, 'user'), ['user = "+0"']);
  assert.match(await configure(path, '--keep-cpu-feature-probe'), /already in place/);
  await configure(path);
  const filtered = await readFile(path, 'utf8');
  assert.deepEqual(active(filtered, 'capability_filters'), ['capability_filters = [ "cpu-unavailable-features" ]']);
  assert.ok(filtered.startsWith('a = 1\n#vmlet-disabled# capability_filters = [ "other" ]'));
});
