/**
 * SandboxService against a fake netd: RunPodSandbox's record and netd calls, duplicates sharing
 * one build, a failed build rolled back (its warm VM released), Stop and Remove tearing down
 * after the containers, and a teardown failure kept for a retry.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SandboxService, type NetdCalls } from '../../../src/sandbox/service.js';
import { VmletError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';

/** netd's calls as lines; `fail` makes a method throw. */
class FakeNetd implements NetdCalls {
  readonly calls: string[] = [];
  readonly fail = new Map<string, Error>();
  setupMs = 20;
  /** Whether a teardown with `keepWarmNetns` keeps it, and what rewarmNetns answers. */
  keeps = true;
  rewarms = true;
  /** rewarmNetns waits for this before answering (the Stop must not). */
  rewarmGate: Promise<void> = Promise.resolve();
  call: NetdCalls['call'] = (async (method: string, params: Record<string, unknown>) => {
    this.calls.push(`${method} ${JSON.stringify(params.sandboxId === undefined ? params : { ...params, sandboxId: 'S' })}`);
    const err = this.fail.get(method);
    if (err) throw err;
    if (method === 'setup') {
      await new Promise((r) => setTimeout(r, this.setupMs));
      return { netnsPath: '/run/netns/vmlet-fake', podIps: ['198.18.101.2'] };
    }
    if (method === 'teardown') return params.keepWarmNetns === true && this.keeps ? { keptNetns: 'vmlet-warm-0001' } : {};
    if (method === 'rewarmNetns') return this.rewarmGate.then(() => ({ rewarmed: this.rewarms }));
    throw new Error(`unexpected netd call ${method}`);
  }) as NetdCalls['call'];
}

const spec = (name: string) => ({
  metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
  hostname: name, logDirectory: '', runtimeHandler: '', labels: {}, annotations: {},
  dns: { servers: ['198.18.101.1'], searches: [], options: [] }, portMappings: [],
});

async function harness(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-sandbox-unit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const netd = new FakeNetd();
  const hooks: string[] = [];
  const sandboxes = new SandboxService(dir, netd, silentLogger, 5000);
  sandboxes.containerHooks = {
    stopContainersOf: async () => void hooks.push('stopContainersOf'),
    removeContainersOf: async () => void hooks.push('removeContainersOf'),
    claimWarmNetns: () => (hooks.push('claimWarmNetns'), 'vmlet-warm-0001'),
    releaseWarm: async () => void hooks.push('releaseWarm'),
  };
  await sandboxes.load();
  return { dir, netd, hooks, sandboxes };
}

/** The harness with a warm VM claimed and never used by every sandbox. */
async function warmHarness(t: TestContext) {
  const h = await harness(t);
  h.sandboxes.containerHooks = {
    ...h.sandboxes.containerHooks,
    holdWarmForReturn: () => (h.hooks.push('holdWarmForReturn'), true),
    finishWarmReturn: async (_id, rewarmed) => void h.hooks.push(`finishWarmReturn ${rewarmed}`),
  };
  return h;
}

test('RunPodSandbox: one netd setup in the claimed warm netns; the sandbox is READY with the pod IPs', async (t) => {
  const { netd, hooks, sandboxes } = await harness(t);
  const id = await sandboxes.run(spec('a'));
  assert.deepEqual(netd.calls, [
    'setup {"sandboxId":"S","podName":"a","podNamespace":"default","podUid":"uid-a","hostname":"a","dns":{"servers":["198.18.101.1"],"searches":[],"options":[]},"portMappings":[],"netnsName":"vmlet-warm-0001"}',
  ]);
  assert.deepEqual(hooks, ['claimWarmNetns']);
  const r = sandboxes.get(id)!;
  assert.deepEqual([r.state, r.netnsPath, r.podIps, r.pendingCleanup], ['READY', '/run/netns/vmlet-fake', ['198.18.101.2'], undefined]);
});

test('concurrent duplicates of a RunPodSandbox share one build and one id', async (t) => {
  const { netd, sandboxes } = await harness(t);
  const [a, b] = await Promise.all([sandboxes.run(spec('a')), sandboxes.run(spec('a'))]);
  assert.equal(a, b);
  assert.equal(await sandboxes.run(spec('a')), a, 'a later duplicate too');
  assert.equal(netd.calls.filter((c) => c.startsWith('setup')).length, 1);
});

test('a failed setup is rolled back: teardown, warm VM released, no record left, the name free again', async (t) => {
  const { dir, netd, hooks, sandboxes } = await harness(t);
  netd.fail.set('setup', new VmletError(13, 'CNI ADD failed (fake)'));
  await assert.rejects(sandboxes.run(spec('a')), /CNI ADD failed/);
  assert.deepEqual(netd.calls.map((c) => c.split(' ')[0]), ['setup', 'teardown']);
  assert.deepEqual(hooks, ['claimWarmNetns', 'releaseWarm']);
  assert.deepEqual(sandboxes.list(), []);
  assert.deepEqual(readdirSync(dir).filter((f) => !f.startsWith('.')), []);
  netd.fail.clear();
  assert.equal(sandboxes.get(await sandboxes.run(spec('a')))!.state, 'READY');
});

test('Stop tears the network down while the VMs end and replies only when both are done; a failed container stop leaves the sandbox for a retry', async (t) => {
  const { netd, hooks, sandboxes } = await harness(t);
  const id = await sandboxes.run(spec('a'));
  netd.calls.length = 0;
  let vmsEnd!: () => void;
  let fail: Error | undefined;
  sandboxes.containerHooks.stopContainersOf = () => {
    hooks.push('stopContainersOf');
    return new Promise<void>((resolve, reject) => (vmsEnd = () => (fail ? reject(fail) : resolve())));
  };
  let replied = false;
  const stopping = sandboxes.stop(id).then(() => (replied = true));
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(netd.calls.map((c) => c.split(' ')[0]), ['teardown'], 'netd tears down while the VM is still ending');
  assert.equal(replied, false, 'no reply before the VM is gone');
  assert.equal(sandboxes.get(id)!.state, 'READY');
  vmsEnd();
  await stopping;
  assert.deepEqual([sandboxes.get(id)!.state, sandboxes.get(id)!.podIps, sandboxes.get(id)!.pendingCleanup], ['NOTREADY', undefined, undefined]);

  // A container stop that fails: the network is gone, the sandbox NOTREADY with what is left to do.
  const id2 = await sandboxes.run(spec('b'));
  fail = new Error('libvirt destroy failed (fake)');
  const stopping2 = sandboxes.stop(id2);
  await new Promise((r) => setTimeout(r, 20));
  vmsEnd();
  await assert.rejects(stopping2, /libvirt destroy failed/);
  assert.equal(sandboxes.get(id2)!.state, 'NOTREADY');
  assert.match(sandboxes.get(id2)!.pendingCleanup!, /stopping its containers failed: libvirt destroy failed/);
  // The retry (kubelet's) stops the containers again and tears down again (idempotent).
  fail = undefined;
  netd.calls.length = 0;
  const retry = sandboxes.stop(id2);
  await new Promise((r) => setTimeout(r, 20));
  vmsEnd();
  await retry;
  assert.deepEqual(netd.calls.map((c) => c.split(' ')[0]), ['teardown']);
  assert.equal(sandboxes.get(id2)!.pendingCleanup, undefined);
});

test('Stop stops the containers and tears the network down; Remove removes them and forgets the sandbox', async (t) => {
  const { netd, hooks, sandboxes } = await harness(t);
  const id = await sandboxes.run(spec('a'));
  netd.calls.length = 0;
  hooks.length = 0;
  await sandboxes.stop(id);
  assert.deepEqual([hooks, netd.calls.map((c) => c.split(' ')[0])], [['stopContainersOf'], ['teardown']]);
  assert.deepEqual([sandboxes.get(id)!.state, sandboxes.get(id)!.podIps], ['NOTREADY', undefined]);
  await sandboxes.remove(id);
  assert.deepEqual(hooks, ['stopContainersOf', 'removeContainersOf']);
  assert.equal(sandboxes.get(id), undefined);
  await sandboxes.remove(id); // idempotent
});

test('Stop with an unused warm VM: netd keeps the netns; after the reply it is rewarmed and the VM goes back only when it was', async (t) => {
  const { netd, hooks, sandboxes } = await warmHarness(t);
  const id = await sandboxes.run(spec('a'));
  netd.calls.length = 0;
  hooks.length = 0;
  let open!: () => void;
  netd.rewarmGate = new Promise((r) => (open = r));
  await sandboxes.stop(id);
  assert.deepEqual(hooks, ['holdWarmForReturn', 'stopContainersOf'], 'the reply does not wait for the rewarm');
  assert.deepEqual(netd.calls, ['teardown {"sandboxId":"S","keepWarmNetns":true}', 'rewarmNetns {"netnsName":"vmlet-warm-0001"}']);
  assert.equal(sandboxes.get(id)!.state, 'NOTREADY');
  open();
  await sandboxes.settle();
  assert.deepEqual(hooks, ['holdWarmForReturn', 'stopContainersOf', 'finishWarmReturn true']);

  const b = await sandboxes.run(spec('b'));
  netd.rewarms = false;
  hooks.length = 0;
  await sandboxes.stop(b);
  await sandboxes.settle();
  assert.deepEqual(hooks, ['holdWarmForReturn', 'stopContainersOf', 'finishWarmReturn false'], 'netd deleted the netns: the VM is destroyed');

  const c = await sandboxes.run(spec('c'));
  netd.keeps = false;
  netd.calls.length = 0;
  hooks.length = 0;
  await sandboxes.stop(c);
  assert.deepEqual(hooks, ['holdWarmForReturn', 'stopContainersOf', 'finishWarmReturn false'], 'netns not kept: the VM is destroyed before the reply');
  assert.deepEqual(netd.calls.map((l) => l.split(' ')[0]), ['teardown']);

  const d = await sandboxes.run(spec('d'));
  netd.keeps = true;
  netd.fail.set('rewarmNetns', new Error('netd gone (fake)'));
  hooks.length = 0;
  await sandboxes.stop(d);
  await sandboxes.settle();
  assert.deepEqual(hooks, ['holdWarmForReturn', 'stopContainersOf', 'finishWarmReturn false'], 'a failed rewarm destroys the VM');
});

test('Stop with an unused warm VM whose teardown fails: the VM is destroyed, the sandbox kept for a retry', async (t) => {
  const { netd, hooks, sandboxes } = await warmHarness(t);
  const id = await sandboxes.run(spec('a'));
  hooks.length = 0;
  netd.fail.set('teardown', new Error('netns busy (fake)'));
  await assert.rejects(sandboxes.stop(id), /netns busy/);
  assert.deepEqual(hooks, ['holdWarmForReturn', 'stopContainersOf', 'finishWarmReturn false']);
  assert.match(sandboxes.get(id)!.pendingCleanup!, /network teardown failed/);
});

test('a teardown that fails keeps the sandbox NOTREADY with the reason; a later Remove finishes the job', async (t) => {
  const { netd, sandboxes } = await harness(t);
  const id = await sandboxes.run(spec('a'));
  netd.fail.set('teardown', new Error('netns busy (fake)'));
  await assert.rejects(sandboxes.stop(id), (err: unknown) => err instanceof VmletError && /netns busy/.test(err.message));
  const r = sandboxes.get(id)!;
  assert.equal(r.state, 'NOTREADY');
  assert.match(r.pendingCleanup!, /network teardown failed: netns busy/);
  netd.fail.clear();
  await sandboxes.remove(id);
  assert.equal(sandboxes.get(id), undefined);
  assert.equal(netd.calls.filter((c) => c.startsWith('teardown')).length, 2);
});
