/** ExecPluginRunner against real executables: the test plugin and Debian's plugins. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Code } from '../../../../src/errors.js';
import { CniPluginError } from '../../../../src/network/cni/errors.js';
import { ExecPluginRunner } from '../../../../src/network/cni/exec.js';
import { BIN_DIRS, SYSTEM_PLUGIN_DIR, TEST_PLUGIN_DIR, deleteLinkAfter, skipReason, tempDir, uid } from './helpers.js';

const skip = skipReason();

/** Running, i.e. neither gone nor a zombie waiting for init to reap it. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

test('the plugin sees exactly the CNI variables and PATH, and the stdin config', { skip }, async (t) => {
  const dir = await tempDir(t, 'exec');
  const recordFile = join(dir, 'calls.jsonl');
  const runner = new ExecPluginRunner({ binDirs: BIN_DIRS, path: '/usr/sbin:/usr/bin:/sbin:/bin' });
  const config = { cniVersion: '1.0.0', name: 'recnet', type: 'multinic', passthrough: true, recordFile, prevResult: { cniVersion: '1.0.0' } };
  const out = await runner.run({
    command: 'DEL',
    pluginType: 'multinic',
    containerId: 'c-exec-1',
    netns: '',
    ifName: 'eth0',
    cniArgs: 'IgnoreUnknown=1;K8S_POD_NAME=p',
    config,
  });
  assert.equal(out, undefined, 'DEL prints nothing');
  const rec = JSON.parse((await readFile(recordFile, 'utf8')).trim()) as { env: Record<string, string>; config: unknown };
  assert.deepEqual(rec.env, {
    CNI_COMMAND: 'DEL',
    CNI_CONTAINERID: 'c-exec-1',
    CNI_NETNS: '',
    CNI_IFNAME: 'eth0',
    CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=p',
    CNI_PATH: `${SYSTEM_PLUGIN_DIR}:${TEST_PLUGIN_DIR}`,
    PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
  });
  assert.deepEqual(rec.config, config);
});

test('a CNI error JSON becomes a CniPluginError carrying the plugin\'s text', { skip }, async () => {
  const runner = new ExecPluginRunner({ binDirs: BIN_DIRS });
  await assert.rejects(
    runner.run({
      command: 'ADD',
      pluginType: 'multinic',
      containerId: 'c-exec-2',
      netns: '/run/netns/none',
      ifName: 'eth0',
      cniArgs: '',
      config: { cniVersion: '1.0.0', name: 'n', type: 'multinic', failOn: 'ADD' },
    }),
    (err: unknown) => {
      assert.ok(err instanceof CniPluginError);
      assert.equal(err.kind, 'plugin-error');
      assert.equal(err.cniCode, 11);
      assert.equal(err.code, Code.UNAVAILABLE, 'code 11 means try again later');
      assert.equal(err.pluginMessage, 'multinic refuses ADD as told');
      assert.equal(err.details, 'container c-exec-2, interface eth0');
      assert.equal(err.exitCode, 1);
      assert.equal(err.message, 'CNI plugin multinic ADD failed: multinic refuses ADD as told: container c-exec-2, interface eth0 (CNI error code 11)');
      return true;
    },
  );
});

test('a real plugin\'s error (bridge given a missing netns) keeps its message', { skip }, async (t) => {
  const runner = new ExecPluginRunner({ binDirs: BIN_DIRS });
  // bridge makes its bridge before it looks at the netns.
  const bridge = `vmlbr${uid()}`;
  deleteLinkAfter(t, bridge);
  await assert.rejects(
    runner.run({
      command: 'ADD',
      pluginType: 'bridge',
      containerId: 'c-exec-3',
      netns: '/run/netns/vmlet-test-does-not-exist',
      ifName: 'eth0',
      cniArgs: 'IgnoreUnknown=1',
      config: { cniVersion: '1.0.0', name: 'n', type: 'bridge', bridge, ipam: {} },
    }),
    (err: unknown) => {
      assert.ok(err instanceof CniPluginError, String(err));
      assert.equal(err.kind, 'plugin-error');
      assert.match(err.pluginMessage ?? '', /vmlet-test-does-not-exist/);
      return true;
    },
  );
});

test('a plugin past the timeout is killed with its process group', { skip }, async (t) => {
  const dir = await tempDir(t, 'exec');
  const pidFile = join(dir, 'pids');
  const runner = new ExecPluginRunner({ binDirs: BIN_DIRS, timeoutMs: 1500 });
  const started = performance.now();
  await assert.rejects(
    runner.run({
      command: 'ADD',
      pluginType: 'multinic',
      containerId: 'c-exec-4',
      netns: '/run/netns/none',
      ifName: 'eth0',
      cniArgs: '',
      config: { cniVersion: '1.0.0', name: 'n', type: 'multinic', hangOn: 'ADD', pidFile },
    }),
    (err: unknown) => err instanceof CniPluginError && err.kind === 'timeout' && err.code === Code.DEADLINE_EXCEEDED,
  );
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 1400 && elapsed < 5000, `returned after ${elapsed} ms`);
  const [pid, childPid] = (await readFile(pidFile, 'utf8')).split(' ').map(Number);
  assert.ok(pid! > 0 && childPid! > 0);
  for (let i = 0; i < 50 && alive(childPid!); i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(alive(pid!), false, 'plugin killed');
  assert.equal(alive(childPid!), false, 'its child killed too');
});

test('an unknown plugin type is reported as not found in the bin dirs', { skip }, async () => {
  const runner = new ExecPluginRunner({ binDirs: BIN_DIRS });
  await assert.rejects(
    runner.run({ command: 'ADD', pluginType: 'nosuchplugin', containerId: 'c', netns: '/run/netns/x', ifName: 'eth0', cniArgs: '', config: {} }),
    (err: unknown) => err instanceof CniPluginError && err.kind === 'not-found' && err.message.includes(SYSTEM_PLUGIN_DIR),
  );
});

test('VERSION works against a Debian plugin', { skip }, async () => {
  const runner = new ExecPluginRunner({ binDirs: BIN_DIRS });
  const out = (await runner.run({ command: 'VERSION', pluginType: 'bridge', containerId: '', netns: '', ifName: '', cniArgs: '', config: { cniVersion: '1.0.0' } })) as {
    supportedVersions: string[];
  };
  assert.ok(out.supportedVersions.includes('1.0.0'));
});

test('a prestarted plugin takes the config of the run() of the same call; one no run() took is killed', { skip }, async (t) => {
  const dir = await tempDir(t, 'exec');
  const recordFile = join(dir, 'calls.jsonl');
  const runner = new ExecPluginRunner({ binDirs: BIN_DIRS, path: '/usr/sbin:/usr/bin:/sbin:/bin' });
  const launch = { command: 'DEL' as const, pluginType: 'multinic', containerId: 'c-exec-pre', netns: '', ifName: 'eth0', cniArgs: 'IgnoreUnknown=1' };
  const waitForPids = async (n: number) => {
    for (let i = 0; i < 250 && runner.prestartedPids().length < n; i++) await new Promise((r) => setTimeout(r, 20));
    return runner.prestartedPids();
  };
  const discardUsed = runner.prestart(launch);
  const discardOther = runner.prestart({ ...launch, ifName: 'net1' });
  const [usedPid, otherPid] = await waitForPids(2);
  assert.ok(usedPid! > 0 && otherPid! > 0);
  // The plugin waits for its config: it has done nothing yet.
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(alive(usedPid!) && alive(otherPid!), true, 'both wait on their stdin');
  assert.equal(await readFile(recordFile, 'utf8').catch(() => ''), '', 'no call recorded before the run()');

  const config = { cniVersion: '1.0.0', name: 'recnet', type: 'multinic', passthrough: true, recordFile };
  assert.equal(await runner.run({ ...launch, config }), undefined);
  assert.deepEqual(runner.prestartedPids(), [otherPid], 'the run() took the prestarted process of its own call only');
  const rec = JSON.parse((await readFile(recordFile, 'utf8')).trim()) as { env: Record<string, string>; config: unknown };
  assert.deepEqual(rec.config, config);
  assert.equal(rec.env.CNI_IFNAME, 'eth0');
  discardUsed(); // taken: a no-op

  // A run() that differs (here in its args) spawns afresh and leaves the other one waiting.
  await runner.run({ ...launch, ifName: 'net1', cniArgs: 'IgnoreUnknown=1;K8S_POD_NAME=p', config });
  assert.equal(alive(otherPid!), true);
  discardOther();
  for (let i = 0; i < 50 && alive(otherPid!); i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(alive(otherPid!), false, 'discarded: killed');
  assert.deepEqual(runner.prestartedPids(), []);
  const calls = (await readFile(recordFile, 'utf8')).trim().split('\n');
  assert.equal(calls.length, 2, 'the discarded process never ran');
});
