import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AlreadyExistsError, FailedPreconditionError } from '../../../../src/errors.js';
import { AttachmentCache } from '../../../../src/network/cni/cache.js';
import { CniChain, type AttachmentRequest } from '../../../../src/network/cni/chain.js';
import type { NetworkConfigList } from '../../../../src/network/cni/config.js';
import { CniPluginError, CniResultError } from '../../../../src/network/cni/errors.js';
import { FakePluginRunner } from '../fakes.js';

const list = (version: NetworkConfigList['cniVersion'] = '1.0.0', extra: Partial<NetworkConfigList> = {}): NetworkConfigList => ({
  cniVersion: version,
  name: 'podnet',
  disableCheck: false,
  plugins: [{ type: 'bridge', bridge: 'vmlet0' }, { type: 'tuning' }, { type: 'portmap', capabilities: { portMappings: true } }],
  ...extra,
});

const req: AttachmentRequest = {
  containerId: 'sandbox1',
  netns: '/run/netns/vmlet-unit',
  ifName: 'eth0',
  pod: { namespace: 'ns', name: 'p', infraContainerId: 'sandbox1', uid: 'u-1' },
  capabilityArgs: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] },
};

async function setup(t: { after: (fn: () => Promise<void>) => void }, netnsGone = false) {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-cni-cache-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const runner = new FakePluginRunner();
  const cache = new AttachmentCache(dir);
  const chain = new CniChain({ runner, cache, netnsExists: async () => !netnsGone });
  return { dir, runner, cache, chain };
}

test('ADD runs plugins in list order, each getting the previous result', async (t) => {
  const { runner, chain } = await setup(t);
  const out = await chain.add(list(), req);
  assert.deepEqual(runner.summary(), ['ADD bridge', 'ADD tuning', 'ADD portmap']);
  assert.equal(runner.calls[0]!.config.prevResult, undefined);
  assert.equal((runner.calls[1]!.config.prevResult as { interfaces: unknown[] }).interfaces.length, 1);
  assert.equal((runner.calls[2]!.config.prevResult as { touchedBy: string }).touchedBy, 'tuning');
  assert.deepEqual(runner.calls[2]!.config.runtimeConfig, { portMappings: req.capabilityArgs!.portMappings });
  assert.equal(runner.calls[0]!.config.runtimeConfig, undefined);
  assert.equal(runner.calls[0]!.cniArgs, 'IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=sandbox1;K8S_POD_UID=u-1');
  assert.equal((out.raw as { touchedBy: string }).touchedBy, 'portmap');
  assert.equal(out.result.ips[0]!.address, '198.18.0.2/24');
});

test('DEL runs in reverse order with the cached result as prevResult, then drops the cache', async (t) => {
  const { runner, chain, dir } = await setup(t);
  const added = await chain.add(list(), req);
  assert.equal((await readdir(dir)).length, 1);
  runner.calls = [];
  await chain.del('podnet', req);
  assert.deepEqual(runner.summary(), ['DEL portmap', 'DEL tuning', 'DEL bridge']);
  for (const c of runner.calls) assert.deepEqual(c.config.prevResult, added.raw);
  assert.deepEqual(runner.calls[0]!.config.runtimeConfig, { portMappings: req.capabilityArgs!.portMappings });
  assert.deepEqual(await readdir(dir), []);
});

test('a repeated DEL succeeds and runs the plugins again when the caller still has the config', async (t) => {
  const { runner, chain } = await setup(t);
  await chain.add(list(), req);
  await chain.del('podnet', req);
  runner.calls = [];
  await chain.del('podnet', req, list());
  assert.deepEqual(runner.summary(), ['DEL portmap', 'DEL tuning', 'DEL bridge']);
  assert.equal(runner.calls[0]!.config.prevResult, undefined);
  runner.calls = [];
  await chain.del('podnet', req);
  assert.deepEqual(runner.summary(), [], 'nothing cached, no config: nothing to run');
});

test('DEL of a vanished netns passes CNI_NETNS="" and succeeds', async (t) => {
  const { runner, chain } = await setup(t, true);
  await chain.add(list(), req);
  runner.calls = [];
  await chain.del('podnet', req);
  assert.deepEqual(runner.calls.map((c) => c.netns), ['', '', '']);
});

test('0.3.x DEL gets no prevResult (that came with 0.4.0)', async (t) => {
  const { runner, chain } = await setup(t);
  await chain.add(list('0.3.1'), req);
  runner.calls = [];
  await chain.del('podnet', req);
  assert.equal(runner.calls.length, 3);
  for (const c of runner.calls) assert.equal('prevResult' in c.config, false);
});

test('DEL after a restart uses the config and args cached by ADD', async (t) => {
  const { runner, cache, chain } = await setup(t);
  await chain.add(list(), req);
  const fresh = new CniChain({ runner, cache, netnsExists: async () => true });
  runner.calls = [];
  const changed = { ...list(), plugins: [{ type: 'ptp' }] };
  await fresh.del('podnet', { containerId: req.containerId, ifName: req.ifName, netns: req.netns }, changed);
  assert.deepEqual(runner.summary(), ['DEL portmap', 'DEL tuning', 'DEL bridge']);
  assert.equal(runner.calls[0]!.cniArgs, 'IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=sandbox1;K8S_POD_UID=u-1');
  assert.deepEqual(runner.calls[0]!.config.runtimeConfig, { portMappings: req.capabilityArgs!.portMappings });
});

test('a failed ADD runs DEL for the whole list in reverse, then rethrows the plugin error', async (t) => {
  const { runner, chain, dir } = await setup(t);
  runner.failOn = { command: 'ADD', type: 'tuning' };
  await assert.rejects(chain.add(list(), req), (err: unknown) => {
    assert.ok(err instanceof CniPluginError);
    assert.equal(err.pluginMessage, 'tuning says no');
    assert.match(err.message, /tuning says no: bad subnet \(CNI error code 7\)/);
    return true;
  });
  assert.deepEqual(runner.summary(), ['ADD bridge', 'ADD tuning', 'DEL portmap', 'DEL tuning', 'DEL bridge']);
  assert.deepEqual(await readdir(dir), [], 'rollback succeeded: no cache left');
});

test('when the rollback DEL fails too, the ADD error is thrown and the record stays for a later DEL', async (t) => {
  const { runner, chain, dir } = await setup(t);
  runner.failOn = { command: 'ADD', type: 'portmap' };
  const origRun = runner.run.bind(runner);
  runner.run = async (r) => {
    if (r.command === 'DEL' && r.pluginType === 'bridge') {
      runner.calls.push(r);
      throw new Error('bridge DEL broke');
    }
    return origRun(r);
  };
  await assert.rejects(chain.add(list(), req), (err: unknown) => err instanceof CniPluginError && err.plugin === 'portmap');
  assert.deepEqual(runner.summary(), ['ADD bridge', 'ADD tuning', 'ADD portmap', 'DEL portmap', 'DEL tuning', 'DEL bridge']);
  assert.equal((await readdir(dir)).length, 1);
  runner.run = origRun;
  runner.failOn = undefined;
  runner.calls = [];
  await chain.del('podnet', req);
  assert.deepEqual(runner.summary(), ['DEL portmap', 'DEL tuning', 'DEL bridge']);
  assert.equal(runner.calls[0]!.config.prevResult, undefined, 'the half-done ADD has no result to pass');
  assert.deepEqual(await readdir(dir), []);
});

test('an invalid plugin result fails the ADD and is rolled back', async (t) => {
  const { runner, chain, dir } = await setup(t);
  runner.output = (r) => (r.command === 'ADD' ? { cniVersion: '1.0.0', ips: [{ address: 'not-an-ip' }] } : undefined);
  await assert.rejects(chain.add(list(), req), CniResultError);
  assert.deepEqual(runner.summary(), ['ADD bridge', 'DEL portmap', 'DEL tuning', 'DEL bridge']);
  assert.deepEqual(await readdir(dir), []);
});

test('an ADD that printed nothing is a failure', async (t) => {
  const { runner, chain } = await setup(t);
  runner.output = () => undefined;
  await assert.rejects(chain.add(list(), req), (err: unknown) => err instanceof CniPluginError && err.kind === 'bad-output');
});

test('DEL goes on past a failing plugin and throws the first error at the end; the cache stays', async (t) => {
  const { runner, chain, dir } = await setup(t);
  await chain.add(list(), req);
  runner.calls = [];
  runner.failOn = { command: 'DEL', type: 'tuning' };
  await assert.rejects(chain.del('podnet', req), (err: unknown) => err instanceof CniPluginError && err.plugin === 'tuning');
  assert.deepEqual(runner.summary(), ['DEL portmap', 'DEL tuning', 'DEL bridge']);
  assert.equal((await readdir(dir)).length, 1);
});

test('a second ADD of the same attachment is refused', async (t) => {
  const { chain } = await setup(t);
  await chain.add(list(), req);
  await assert.rejects(chain.add(list(), req), AlreadyExistsError);
});

test('CHECK runs in order with the cached result; refused before 0.4.0; skipped with disableCheck', async (t) => {
  const { runner, chain } = await setup(t);
  const added = await chain.add(list(), req);
  runner.calls = [];
  await chain.check(list(), req);
  assert.deepEqual(runner.summary(), ['CHECK bridge', 'CHECK tuning', 'CHECK portmap']);
  for (const c of runner.calls) assert.deepEqual(c.config.prevResult, added.raw);
  runner.calls = [];
  await chain.check(list('1.0.0', { disableCheck: true }), req);
  assert.deepEqual(runner.summary(), []);
  await assert.rejects(chain.check(list('0.3.1'), req), FailedPreconditionError);
  await assert.rejects(chain.check(list(), { ...req, containerId: 'other' }), FailedPreconditionError);
});

test('operations on one attachment are serialized', async (t) => {
  const { runner, chain } = await setup(t);
  let active = 0;
  let maxActive = 0;
  const origRun = runner.run.bind(runner);
  runner.run = async (r) => {
    active++;
    maxActive = Math.max(maxActive, active);
    await new Promise((res) => setTimeout(res, 5));
    active--;
    return origRun(r);
  };
  await Promise.all([chain.add(list(), req), chain.del('podnet', req)]);
  assert.equal(maxActive, 1);
  assert.deepEqual(runner.summary(), ['ADD bridge', 'ADD tuning', 'ADD portmap', 'DEL portmap', 'DEL tuning', 'DEL bridge']);
});

test('bad pod args are refused before any plugin runs', async (t) => {
  const { runner, chain, dir } = await setup(t);
  await assert.rejects(chain.add(list(), { ...req, pod: { ...req.pod!, name: 'x;y=z' } }), /CNI_ARGS value/);
  assert.deepEqual(runner.calls, []);
  assert.deepEqual(await readdir(dir), []);
});

test('an unreadable cache record does not block DEL: the given config is used and the record removed', async (t) => {
  const { runner, chain, cache, dir } = await setup(t);
  const { writeFile, mkdir } = await import('node:fs/promises');
  await mkdir(dir, { recursive: true });
  await writeFile(cache.fileFor({ networkName: 'podnet', ...req }), '{ torn');
  await chain.del('podnet', req, list());
  assert.deepEqual(runner.summary(), ['DEL portmap', 'DEL tuning', 'DEL bridge']);
  assert.deepEqual(await readdir(dir), []);
});

test('prestartDel launches exactly the first plugin the DEL runs, which takes it; a vanished netns is launched as ""', async (t) => {
  for (const netnsGone of [false, true]) {
    const { runner, chain, cache } = await setup(t, netnsGone);
    await chain.add(list(), req);
    const [cached] = await cache.list('sandbox1');
    // The caller knows no pod args: the DEL takes them from the cache, as the launch must.
    const delReq = { containerId: 'sandbox1', netns: req.netns, ifName: 'eth0' };
    const discard = chain.prestartDel(cached!, delReq);
    await new Promise((r) => setImmediate(r));
    runner.calls = [];
    await chain.del('podnet', delReq);
    discard();
    const { config: _config, ...first } = runner.calls[0]!;
    assert.equal(first.pluginType, 'portmap');
    assert.equal(first.netns, netnsGone ? '' : req.netns);
    assert.deepEqual(runner.prestarts.map((p) => ({ launch: p.launch, taken: p.taken, discarded: p.discarded })), [{ launch: first, taken: true, discarded: false }]);
  }
});

test('prestartDel discarded before its launch is made launches nothing', async (t) => {
  const { runner, chain, cache } = await setup(t);
  await chain.add(list(), req);
  const [cached] = await cache.list('sandbox1');
  chain.prestartDel(cached!, req)();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(runner.prestarts, []);
});
