import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  loadNetworkConfig,
  parseConfigFile,
  selectConfigFiles,
} from '../../../../src/network/cni/config.js';

async function confDir(t: { after: (fn: () => Promise<void>) => void }, files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-cni-conf-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  return dir;
}

const bridgeList = (name: string, version = '1.0.0') =>
  JSON.stringify({ cniVersion: version, name, plugins: [{ type: 'bridge', bridge: 'vmlet0' }, { type: 'portmap', capabilities: { portMappings: true } }] });
const single = (name: string, version?: string) =>
  JSON.stringify({ ...(version ? { cniVersion: version } : {}), name, type: 'ptp', ipam: { type: 'host-local', subnet: '198.18.0.0/24' } });

test('config files are .conf, .conflist and .json, tried in file-name order', () => {
  assert.deepEqual(
    selectConfigFiles(['20-b.conflist', '10-a.conf', 'README.md', '05-x.json', '99-z.conf.bak', '.hidden.conf', '10-a.conflist']),
    ['05-x.json', '10-a.conf', '10-a.conflist', '20-b.conflist'],
  );
});

test('the first valid file in name order wins', async (t) => {
  const dir = await confDir(t, { '20-second.conflist': bridgeList('second'), '10-first.conflist': bridgeList('first') });
  const r = await loadNetworkConfig(dir);
  assert.ok(r.ok);
  assert.equal(r.config.name, 'first');
  assert.equal(r.file, join(dir, '10-first.conflist'));
  assert.deepEqual(r.skipped, []);
});

test('a .conf is wrapped as a one-plugin list carrying the file\'s version and name', async (t) => {
  const dir = await confDir(t, { '10-ptp.conf': single('podnet', '0.4.0') });
  const r = await loadNetworkConfig(dir);
  assert.ok(r.ok);
  assert.equal(r.config.cniVersion, '0.4.0');
  assert.equal(r.config.name, 'podnet');
  assert.equal(r.config.disableCheck, false);
  assert.equal(r.config.plugins.length, 1);
  assert.equal(r.config.plugins[0]!.type, 'ptp');
  assert.deepEqual(r.config.plugins[0]!.ipam, { type: 'host-local', subnet: '198.18.0.0/24' });
});

test('invalid files before a valid one are skipped, each with its file and reason', async (t) => {
  const dir = await confDir(t, {
    '01-noversion.conf': single('a'),
    '02-old.conflist': bridgeList('b', '0.2.0'),
    '03-broken.json': '{ "cniVersion": "1.0.0", ',
    '04-empty.conflist': JSON.stringify({ cniVersion: '1.0.0', name: 'c', plugins: [] }),
    '05-good.conflist': bridgeList('good'),
  });
  const r = await loadNetworkConfig(dir);
  assert.ok(r.ok);
  assert.equal(r.config.name, 'good');
  assert.deepEqual(
    r.skipped.map((s) => s.file),
    ['01-noversion.conf', '02-old.conflist', '03-broken.json', '04-empty.conflist'].map((f) => join(dir, f)),
  );
  assert.match(r.skipped[0]!.reason, /missing cniVersion/);
  assert.match(r.skipped[1]!.reason, /"0\.2\.0" is older than 0\.3\.0/);
  assert.match(r.skipped[2]!.reason, /not valid JSON/);
  assert.match(r.skipped[3]!.reason, /"plugins" is empty/);
});

test('with no valid file the reason names every refused file and why', async (t) => {
  const dir = await confDir(t, { '10-old.conf': single('a', '0.1.0'), '20-missing.conflist': JSON.stringify({ name: 'b', plugins: [{ type: 'bridge' }] }) });
  const r = await loadNetworkConfig(dir);
  assert.equal(r.ok, false);
  assert.ok(!r.ok);
  assert.ok(r.reason.includes(join(dir, '10-old.conf')), r.reason);
  assert.ok(r.reason.includes(join(dir, '20-missing.conflist')), r.reason);
  assert.match(r.reason, /10-old\.conf: cniVersion "0\.1\.0" is older than 0\.3\.0/);
  assert.match(r.reason, /20-missing\.conflist: missing cniVersion/);
});

test('an empty or missing conf dir is reported as such', async (t) => {
  const dir = await confDir(t, { 'README': 'not a config' });
  const empty = await loadNetworkConfig(dir);
  assert.ok(!empty.ok);
  assert.match(empty.reason, /no network config found in .* \(no \.conf, \.conflist or \.json file\)/);
  const missing = await loadNetworkConfig(join(dir, 'nope'));
  assert.ok(!missing.ok);
  assert.match(missing.reason, /does not exist/);
});

test('a directory named like a config file is skipped', async (t) => {
  const dir = await confDir(t, { '20-good.conflist': bridgeList('good') });
  await mkdir(join(dir, '10-dir.conf'));
  const r = await loadNetworkConfig(dir);
  assert.ok(r.ok);
  assert.equal(r.skipped[0]!.reason, 'not a regular file');
});

const refusals: [string, string, unknown, RegExp][] = [
  ['list without plugins', 'x.conflist', { cniVersion: '1.0.0', name: 'n' }, /no "plugins" list/],
  ['plugins not a list', 'x.conflist', { cniVersion: '1.0.0', name: 'n', plugins: {} }, /"plugins" is not a list/],
  ['unknown future version', 'x.conflist', { cniVersion: '2.0.0', name: 'n', plugins: [{ type: 'bridge' }] }, /"2\.0\.0" is not supported/],
  ['version not a string', 'x.conf', { cniVersion: 1, name: 'n', type: 'bridge' }, /cniVersion 1 is not a version/],
  ['missing name', 'x.conf', { cniVersion: '1.0.0', type: 'bridge' }, /missing network name/],
  ['name with a slash', 'x.conf', { cniVersion: '1.0.0', name: 'a/b', type: 'bridge' }, /network name "a\/b" is invalid/],
  ['plugin without type', 'x.conflist', { cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'bridge' }, {}] }, /plugins\[1\]: missing "type"/],
  ['plugin type with a path', 'x.conflist', { cniVersion: '1.0.0', name: 'n', plugins: [{ type: '../../bin/sh' }] }, /is not a plugin name/],
  ['plugin type with ..', 'x.conf', { cniVersion: '1.0.0', name: 'n', type: 'a..b' }, /is not a plugin name/],
  ['capabilities not booleans', 'x.conflist', { cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'portmap', capabilities: { portMappings: 'yes' } }] }, /"capabilities" must map/],
  ['a list in a .conf', 'x.conf', { cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'bridge' }] }, /not named \.conflist/],
  ['top level not an object', 'x.conf', [1, 2], /not a JSON object/],
  ['disableCheck not a boolean', 'x.conflist', { cniVersion: '1.0.0', name: 'n', disableCheck: 'yes', plugins: [{ type: 'bridge' }] }, /"disableCheck" must be true or false/],
];
for (const [what, file, doc, reason] of refusals) {
  test(`refused: ${what}`, () => {
    const r = parseConfigFile(file, JSON.stringify(doc));
    assert.ok(!r.ok, 'should be refused');
    assert.match(r.reason, reason);
  });
}

test('every supported version from 0.3.0 to 1.1.0 is accepted', () => {
  for (const v of ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
    const r = parseConfigFile('x.conflist', bridgeList('n', v));
    assert.ok(r.ok, v);
    assert.equal(r.config.cniVersion, v);
  }
});

test('a .json file may hold either a list or a single plugin', () => {
  const list = parseConfigFile('x.json', bridgeList('n'));
  assert.ok(list.ok);
  assert.equal(list.config.plugins.length, 2);
  const one = parseConfigFile('x.json', single('n', '1.0.0'));
  assert.ok(one.ok);
  assert.equal(one.config.plugins[0]!.type, 'ptp');
});

test('cniVersions (spec 1.1) picks the newest version vmlet supports', () => {
  const r = parseConfigFile('x.conflist', JSON.stringify({ cniVersion: '1.0.0', cniVersions: ['1.0.0', '1.1.0', '9.0.0'], name: 'n', plugins: [{ type: 'bridge' }] }));
  assert.ok(r.ok);
  assert.equal(r.config.cniVersion, '1.1.0');
});

test('disableCheck is read', () => {
  const r = parseConfigFile('x.conflist', JSON.stringify({ cniVersion: '1.0.0', name: 'n', disableCheck: true, plugins: [{ type: 'bridge' }] }));
  assert.ok(r.ok);
  assert.equal(r.config.disableCheck, true);
});
