import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FailedPreconditionError, InvalidArgumentError } from '../../../../src/errors.js';
import { credentialsFromAuthConfig, parseChallenges } from '../../../../src/image/registry/auth.js';
import { DiskTree, normalizeEntryPath } from '../../../../src/image/registry/disk_tree.js';
import { defaultServer, isLoopbackHost, parseHostsToml } from '../../../../src/image/registry/hosts.js';
import { MEDIA, parseManifestDocument, selectPlatform } from '../../../../src/image/registry/manifest.js';
import { imageSourceOf, toRegistryReference } from '../../../../src/image/registry/name.js';
import { parseImageName } from '../../../../src/image/reference.js';
import { isHttpUrl } from '../../../../src/image/translate.js';
import { progressFields } from '../../../../src/image/progress.js';

const D = (c: string): string => `sha256:${c.repeat(64)}`;

test('registry references: host detection, grammar, default tag', () => {
  assert.deepEqual(toRegistryReference(parseImageName('127.0.0.1:5000/vmlet/guest:1')), { registry: '127.0.0.1:5000', repository: 'vmlet/guest', tag: '1' });
  assert.deepEqual(toRegistryReference(parseImageName('quay.io/containerdisks/fedora')), { registry: 'quay.io', repository: 'containerdisks/fedora', tag: 'latest' });
  assert.deepEqual(toRegistryReference(parseImageName(`localhost/a@${D('a')}`)), { registry: 'localhost', repository: 'a', digest: D('a') });
  assert.throws(() => toRegistryReference(parseImageName('quay.io/Upper/x')), InvalidArgumentError);
  assert.throws(() => toRegistryReference(parseImageName('cirros')), InvalidArgumentError);
});

test('routing: one decision for url, translation, virtlet.cloud and registry names', () => {
  const knows = (n: { repo: string }): boolean => n.repo === 'cirros' || n.repo === 'example.com/translated';
  const src = (s: string): string | undefined => imageSourceOf(parseImageName(s), knows, isHttpUrl);
  assert.equal(src('https://x.test/a.img'), 'url');
  assert.equal(src('virtlet.cloud/cirros'), 'translation');
  assert.equal(src('cirros'), 'translation');
  assert.equal(src('example.com/translated'), 'translation');
  assert.equal(src('quay.io/containerdisks/fedora:40'), 'registry');
  assert.equal(src('busybox'), undefined);
});

test('WWW-Authenticate challenges', () => {
  assert.deepEqual(parseChallenges('Bearer realm="https://auth.test/token",service="registry.test",scope="repository:a/b:pull"'), [
    { scheme: 'bearer', params: { realm: 'https://auth.test/token', service: 'registry.test', scope: 'repository:a/b:pull' } },
  ]);
  assert.deepEqual(parseChallenges('Basic realm="x, y", Bearer realm="r"'), [
    { scheme: 'basic', params: { realm: 'x, y' } },
    { scheme: 'bearer', params: { realm: 'r' } },
  ]);
  assert.deepEqual(parseChallenges('basic realm=plain'), [{ scheme: 'basic', params: { realm: 'plain' } }]);
  assert.deepEqual(parseChallenges(''), []);
});

test('credentials from a CRI AuthConfig', () => {
  assert.equal(credentialsFromAuthConfig({}), undefined);
  assert.deepEqual(credentialsFromAuthConfig({ username: 'u', password: 'p' }), { kind: 'basic', username: 'u', password: 'p' });
  assert.deepEqual(credentialsFromAuthConfig({ auth: Buffer.from('u:p:q').toString('base64') }), { kind: 'basic', username: 'u', password: 'p:q' });
  assert.deepEqual(credentialsFromAuthConfig({ username: 'u', identity_token: 'rt' }), { kind: 'identity', username: 'u', token: 'rt' });
  assert.deepEqual(credentialsFromAuthConfig({ registry_token: 'tok', username: 'u' }), { kind: 'registry-token', token: 'tok' });
  assert.throws(() => credentialsFromAuthConfig({ auth: Buffer.from('nocolon').toString('base64') }), InvalidArgumentError);
  assert.throws(() => credentialsFromAuthConfig({ password: 'a\nb' }), InvalidArgumentError);
});

test('hosts.toml: mirrors in order, then the server; bad keys refused', () => {
  const specs = parseHostsToml(
    'server = "https://registry-1.docker.io"\n[host."https://mirror.test"]\n capabilities = ["pull", "resolve"]\n ca = "ca.crt"\n skip_verify = false\n[host."http://127.0.0.1:5000/v2/x"]\n override_path = true\n client = [["c.pem", "k.pem"]]\n',
    'hosts.toml',
    'docker.io',
  );
  assert.deepEqual(specs.map((s) => [s.url, s.mirror, s.capabilities.join(',')]), [
    ['https://mirror.test', true, 'pull,resolve'],
    ['http://127.0.0.1:5000/v2/x', true, 'pull,resolve,push'],
    ['https://registry-1.docker.io', false, 'pull,resolve,push'],
  ]);
  assert.deepEqual(specs[0]!.caFiles, ['ca.crt']);
  assert.deepEqual(specs[1]!.clientFiles, [{ cert: 'c.pem', key: 'k.pem' }]);
  assert.equal(parseHostsToml('', 'h', 'docker.io')[0]!.url, 'https://registry-1.docker.io');
  assert.equal(defaultServer('quay.io'), 'https://quay.io');
  assert.throws(() => parseHostsToml('skip_verfy = true\n', 'h', 'x.test'), /unknown key "skip_verfy"/);
  assert.throws(() => parseHostsToml('server = "ftp://x"\n', 'h', 'x.test'), /must be http or https/);
  assert.throws(() => parseHostsToml('[[', 'h', 'x.test'), /not valid TOML/);
  assert.throws(() => parseHostsToml(`# ${'x'.repeat(70_000)}\n`, 'h', 'x.test'), /larger than/);
  assert.equal(isLoopbackHost('127.0.0.1:5000'), true);
  assert.equal(isLoopbackHost('localhost'), true);
  assert.equal(isLoopbackHost('registry.test:5000'), false);
});

test('manifests and indexes', () => {
  const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D('b'), size: 10 };
  const m = parseManifestDocument(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.ociManifest, config: { mediaType: 'x', digest: D('a'), size: 2 }, layers: [layer] })), MEDIA.ociManifest, 'm');
  assert.equal(m.kind, 'manifest');
  assert.equal(m.kind === 'manifest' && m.layers[0]!.compression, 'gzip');
  const bad = (doc: unknown, re: RegExp): void => assert.throws(() => parseManifestDocument(Buffer.from(JSON.stringify(doc)), '', 'm'), (e: Error) => e instanceof FailedPreconditionError && re.test(e.message));
  bad({ schemaVersion: 1 }, /schemaVersion 1/);
  bad({ schemaVersion: 2, config: { mediaType: 'x', digest: D('a'), size: 2 }, layers: [] }, /no layers/);
  bad({ schemaVersion: 2, config: { mediaType: 'x', digest: 'sha512:ab', size: 2 }, layers: [layer] }, /only sha256/);
  bad({ schemaVersion: 2, config: { mediaType: 'x', digest: D('a'), size: 2 }, layers: [{ ...layer, mediaType: 'application/x-helm' }] }, /not a tar layer/);
  bad({ schemaVersion: 2, config: { mediaType: 'x', digest: D('a'), size: 2 }, layers: [{ ...layer, size: -1 }] }, /size/);
  const idx = parseManifestDocument(
    Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [
      { mediaType: MEDIA.ociManifest, digest: D('c'), size: 1, platform: { os: 'linux', architecture: 'arm64' } },
      { mediaType: MEDIA.dockerManifest, digest: D('d'), size: 1, platform: { os: 'linux', architecture: 'amd64' } },
    ] })),
    MEDIA.ociIndex,
    'i',
  );
  assert.equal(idx.kind === 'index' && selectPlatform(idx, 'i').digest, D('d'));
  assert.throws(() => idx.kind === 'index' && selectPlatform(idx, 'i', 'linux', 's390x'), /no linux\/s390x image in the index \(it offers: linux\/arm64, linux\/amd64\)/);
});

test('disk tree: whiteouts hide lower layers only; non-regular disks refused', () => {
  assert.equal(normalizeEntryPath('./disk//a.img'), 'disk/a.img');
  assert.equal(normalizeEntryPath('/disk/../etc'), undefined);
  const t = new DiskTree<string>();
  assert.deepEqual(t.entry('disk/', 'directory', 'directory', 0), { action: 'skip', released: [] });
  const w = t.entry('disk/a.img', 'file', 'file', 0);
  assert.equal(w.action, 'write');
  t.add('disk/a.img', 0, 'A');
  t.add('disk/b.img', 0, 'B');
  assert.deepEqual(t.entry('disk/.wh.a.img', 'file', 'file', 1).released, ['A']);
  t.add('disk/c.img', 1, 'C');
  assert.deepEqual(t.entry('disk/.wh..wh..opq', 'file', 'file', 1).released, ['B'], 'opaque keeps the same layer');
  assert.deepEqual(t.result(), { path: 'disk/c.img', payload: 'C' });
  assert.deepEqual(t.entry('disk/c.img', 'file', 'file', 2).released, ['C'], 'a later entry replaces');
  assert.throws(() => t.entry('disk/x', 'other', 'symbolic link', 2), /\/disk\/x is a symbolic link/);
  assert.throws(() => t.entry('disk', 'file', 'file', 2), /\/disk is a file, not a directory/);
  assert.deepEqual(t.entry('etc/passwd', 'other', 'symbolic link', 2), { action: 'skip', released: [] });
  assert.throws(() => new DiskTree<string>().result(), /no regular file under \/disk\//);
});

test('progress fields: rate, percent, ETA', () => {
  assert.deepEqual(progressFields(50, 100, 1000), { receivedBytes: 50, totalBytes: 100, percent: 50, bytesPerSecond: 50, etaSeconds: 1 });
  assert.deepEqual(progressFields(50, undefined, 2000), { receivedBytes: 50, bytesPerSecond: 25 });
});
