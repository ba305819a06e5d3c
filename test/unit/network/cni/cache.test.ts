import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile, rename, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { InternalError } from '../../../../src/errors.js';
import { AttachmentCache, cniCacheDir, type CachedAttachment } from '../../../../src/network/cni/cache.js';

async function tempCache(t: { after: (fn: () => Promise<void>) => void }) {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-cni-cache-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return { dir, cache: new AttachmentCache(join(dir, 'results')) };
}

const record = (containerId: string, ifName = 'eth0'): CachedAttachment => ({
  kind: 'vmlet-cni-attachment-v1',
  networkName: 'pod-net.v1',
  containerId,
  ifName,
  state: 'added',
  netns: '/run/netns/x',
  pod: { namespace: 'ns', name: 'p', infraContainerId: containerId, uid: 'u' },
  capabilityArgs: { portMappings: [{ hostPort: 1, containerPort: 2, protocol: 'tcp' }] },
  config: { cniVersion: '1.0.0', name: 'pod-net.v1', disableCheck: false, plugins: [{ type: 'bridge' }] },
  result: { cniVersion: '1.0.0', ips: [] },
});

test('the cache lives under the state dir', () => {
  assert.equal(cniCacheDir('/var/lib/vmlet'), '/var/lib/vmlet/cni/results');
});

test('one file per (network, container, ifname), round-tripped, private, removed idempotently', async (t) => {
  const { dir, cache } = await tempCache(t);
  const rec = record('c1');
  await cache.save(rec);
  assert.deepEqual(await cache.load(rec), rec);
  const file = cache.fileFor(rec);
  assert.equal(basename(file), 'pod-net.v1+c1+eth0.json');
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.deepEqual(await readdir(join(dir, 'results')), ['pod-net.v1+c1+eth0.json'], 'no temp files left');
  await cache.remove(rec);
  await cache.remove(rec);
  assert.equal(await cache.load(rec), undefined);
});

test('key parts are escaped so they cannot collide or escape the dir', async (t) => {
  const { cache } = await tempCache(t);
  assert.equal(basename(cache.fileFor({ networkName: 'n', containerId: 'c', ifName: 'a+b%' })), 'n+c+a%2Bb%25.json');
  assert.throws(() => cache.fileFor({ networkName: '../n', containerId: 'c', ifName: 'eth0' }));
  assert.throws(() => cache.fileFor({ networkName: 'n', containerId: '../c', ifName: 'eth0' }));
  assert.throws(() => cache.fileFor({ networkName: 'n', containerId: 'c', ifName: 'a/b' }));
});

test('list returns every readable record and skips junk', async (t) => {
  const { dir, cache } = await tempCache(t);
  await cache.save(record('c1'));
  await cache.save(record('c2', 'net1'));
  await writeFile(join(dir, 'results', 'junk.json'), '{');
  await writeFile(join(dir, 'results', '.tmp-leftover'), 'x');
  assert.deepEqual((await cache.list()).map((r) => `${r.containerId}/${r.ifName}`), ['c1/eth0', 'c2/net1']);
  assert.deepEqual(await new AttachmentCache(join(dir, 'absent')).list(), []);
});

test('list of one container reads only the files its name gives, and checks what it read', async (t) => {
  const { cache } = await tempCache(t);
  await cache.save(record('c1'));
  await cache.save(record('c1', 'net1'));
  await cache.save(record('c12'));
  await cache.save(record('c2'));
  assert.deepEqual((await cache.list('c1')).map((r) => `${r.containerId}/${r.ifName}`), ['c1/eth0', 'c1/net1']);
  assert.deepEqual(await cache.list('c3'), []);
  // A file named for c1 that holds another container's record is not c1's.
  const c2Text = await readFile(cache.fileFor({ networkName: record('c2').networkName, containerId: 'c2', ifName: 'eth0' }), 'utf8');
  await writeFile(cache.fileFor({ networkName: record('c2').networkName, containerId: 'c1', ifName: 'eth9' }), c2Text);
  assert.deepEqual((await cache.list('c1')).map((r) => `${r.containerId}/${r.ifName}`), ['c1/eth0', 'c1/net1']);
});

test('a record stored under another key, or corrupt, is refused on load', async (t) => {
  const { cache } = await tempCache(t);
  await cache.save(record('c1'));
  await rename(cache.fileFor(record('c1')), cache.fileFor(record('c2')));
  await assert.rejects(cache.load(record('c2')), /belongs to another attachment/);
  await writeFile(cache.fileFor(record('c3')), 'not json');
  await assert.rejects(cache.load(record('c3')), InternalError);
  await writeFile(cache.fileFor(record('c4')), JSON.stringify({ ...record('c4'), config: { name: 'x' } }));
  await assert.rejects(cache.load(record('c4')), /holds no valid config/);
});
