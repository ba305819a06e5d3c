import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, chmod, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError } from '../../../../src/errors.js';
import {
  buildCniArgs,
  buildPluginConfig,
  buildPluginEnv,
  selectRuntimeConfig,
  validateContainerId,
  validateIfName,
  validateNetnsPath,
} from '../../../../src/network/cni/invocation.js';
import { findPlugin, parseBinDirs } from '../../../../src/network/cni/exec.js';
import { CniPluginError } from '../../../../src/network/cni/errors.js';
import type { NetworkConfigList } from '../../../../src/network/cni/config.js';

const pod = { namespace: 'default', name: 'web-0', infraContainerId: 'a1b2c3d4e5', uid: '6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b' };

test('CNI_ARGS carries IgnoreUnknown and the K8S_ pod keys in kubelet order', () => {
  assert.equal(
    buildCniArgs(pod),
    'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=a1b2c3d4e5;K8S_POD_UID=6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b',
  );
  assert.equal(buildCniArgs(undefined), '');
});

for (const [key, value] of [
  ['namespace', 'default;K8S_POD_NAME=evil'],
  ['name', 'web=0'],
  ['uid', ''],
  ['infraContainerId', 'abc\ndef'],
  ['name', 'web 0'],
  ['namespace', '-leading-dash'],
] as const) {
  test(`CNI_ARGS refuses ${key}=${JSON.stringify(value)}`, () => {
    assert.throws(() => buildCniArgs({ ...pod, [key]: value }), InvalidArgumentError);
  });
}

test('container ids, interface names and netns paths are validated per the spec', () => {
  assert.equal(validateContainerId('abc_1.2-3'), 'abc_1.2-3');
  for (const bad of ['', '-abc', 'a/b', 'a b', '../x', 'x'.repeat(200)]) assert.throws(() => validateContainerId(bad), InvalidArgumentError, bad);
  assert.equal(validateIfName('eth0'), 'eth0');
  for (const bad of ['', '.', '..', 'a/b', 'a:b', 'a b', 'abcdefghijklmnop']) assert.throws(() => validateIfName(bad), InvalidArgumentError, bad);
  assert.equal(validateNetnsPath('/run/netns/x', false), '/run/netns/x');
  assert.equal(validateNetnsPath('', true), '');
  for (const bad of ['', 'run/netns/x', '/run/netns/../../etc/passwd']) assert.throws(() => validateNetnsPath(bad, false), InvalidArgumentError, bad);
});

const list: NetworkConfigList = {
  cniVersion: '1.0.0',
  name: 'podnet',
  disableCheck: false,
  plugins: [
    { type: 'bridge', name: 'ignored', cniVersion: '0.1.0', bridge: 'vmlet0' },
    { type: 'portmap', capabilities: { portMappings: true, bandwidth: false }, snat: true },
    { type: 'bandwidth', capabilities: { bandwidth: true } },
  ],
};
const capabilityArgs = {
  portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
  bandwidth: { ingressRate: 1000, ingressBurst: 100, egressRate: 1000, egressBurst: 100 },
  dns: { servers: ['198.18.0.10'] },
};

test('runtimeConfig holds only capabilities the plugin declares true and the runtime has', () => {
  assert.deepEqual(selectRuntimeConfig(list.plugins[0]!, capabilityArgs), {});
  assert.deepEqual(selectRuntimeConfig(list.plugins[1]!, capabilityArgs), { portMappings: capabilityArgs.portMappings });
  assert.deepEqual(selectRuntimeConfig(list.plugins[2]!, capabilityArgs), { bandwidth: capabilityArgs.bandwidth });
  assert.deepEqual(selectRuntimeConfig(list.plugins[2]!, { dns: {} }), {});
  assert.deepEqual(selectRuntimeConfig({ type: 'x', capabilities: { dns: true } }, { dns: undefined }), {});
});

test('the stdin config gets the list name and version, prevResult, runtimeConfig, and loses capabilities', () => {
  const prev = { cniVersion: '1.0.0', ips: [] };
  assert.deepEqual(buildPluginConfig(list, list.plugins[1]!, { prevResult: prev, capabilityArgs }), {
    type: 'portmap',
    snat: true,
    name: 'podnet',
    cniVersion: '1.0.0',
    runtimeConfig: { portMappings: capabilityArgs.portMappings },
    prevResult: prev,
  });
  assert.deepEqual(buildPluginConfig(list, list.plugins[0]!, { capabilityArgs }), {
    type: 'bridge',
    name: 'podnet',
    cniVersion: '1.0.0',
    bridge: 'vmlet0',
  });
});

test('a prevResult written into the file is never passed on', () => {
  const cfg = buildPluginConfig(list, { type: 'tuning', prevResult: { forged: true } }, {});
  assert.equal('prevResult' in cfg, false);
});

test('the plugin environment is exactly the CNI variables and PATH', () => {
  assert.deepEqual(
    buildPluginEnv({ command: 'DEL', containerId: 'c1', netns: '', ifName: 'eth0', cniArgs: 'IgnoreUnknown=1', binDirs: ['/opt/cni/bin', '/usr/lib/cni'], path: '/usr/bin' }),
    { CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c1', CNI_NETNS: '', CNI_IFNAME: 'eth0', CNI_ARGS: 'IgnoreUnknown=1', CNI_PATH: '/opt/cni/bin:/usr/lib/cni', PATH: '/usr/bin' },
  );
});

test('bin dirs: colon list, absolute only, no "..", duplicates dropped', () => {
  assert.deepEqual(parseBinDirs('/opt/cni/bin::/usr/lib/cni:/opt/cni/bin/'), ['/opt/cni/bin', '/usr/lib/cni']);
  assert.throws(() => parseBinDirs('relative/bin'), InvalidArgumentError);
  assert.throws(() => parseBinDirs('/opt/../bin'), InvalidArgumentError);
  assert.throws(() => parseBinDirs(''), InvalidArgumentError);
});

test('findPlugin refuses names with "/" or ".." and searches dirs in order', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'vmlet-cni-bin-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const a = join(root, 'a');
  const b = join(root, 'b');
  await mkdir(a);
  await mkdir(b);
  await writeFile(join(a, 'plain'), 'not executable');
  await writeFile(join(b, 'plain'), '#!/bin/sh\n');
  await chmod(join(b, 'plain'), 0o755);
  await writeFile(join(a, 'first'), '#!/bin/sh\n');
  await chmod(join(a, 'first'), 0o755);
  await writeFile(join(b, 'first'), '#!/bin/sh\n');
  await chmod(join(b, 'first'), 0o755);
  assert.equal(await findPlugin('plain', [a, b]), join(b, 'plain'));
  assert.equal(await findPlugin('first', [a, b]), join(a, 'first'));
  await assert.rejects(findPlugin('../b/plain', [a, b]), InvalidArgumentError);
  await assert.rejects(findPlugin('b/plain', [root]), InvalidArgumentError);
  await assert.rejects(findPlugin('..', [a]), InvalidArgumentError);
  await assert.rejects(findPlugin('missing', [a, b]), (err: unknown) => err instanceof CniPluginError && err.kind === 'not-found');
});
