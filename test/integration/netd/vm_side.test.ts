/**
 * netd's NetworkManager driven directly against real namespaces and Debian's bridge plugin: the
 * VM side of a sandbox (wiring, DHCP) against concurrent callers and teardown. Pod network in
 * 198.18.0.0/15, no masquerade; every test checks that nothing is left.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { loadConfig } from '../../../src/config/load.js';
import { NetworkManager } from '../../../src/netd/manager.js';
import type { NetdEvent, SetupParams } from '../../../src/netd/protocol.js';
import { netnsNameFor } from '../../../src/network/names.js';
import { FailedPreconditionError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';

const tag = randomBytes(3).toString('hex');
const bridge = `vtv${tag}`;
const dir = mkdtempSync(join(tmpdir(), 'vmlet-netd-vmside-'));
const ipamDir = join(dir, 'ipam');
const events: NetdEvent[] = [];
let manager: NetworkManager;

before(async () => {
  const confDir = join(dir, 'cni');
  mkdirSync(confDir);
  writeFileSync(join(confDir, '10-test.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-vmside-${tag}`,
    plugins: [{ type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet: '198.18.78.0/24' }]], routes: [{ dst: '198.18.0.0/15' }] } }],
  }));
  const config = loadConfig({ flags: { 'state-dir': join(dir, 'state'), 'cni-conf-dir': confDir, 'log-level': 'silent' } });
  manager = new NetworkManager(config, silentLogger, (e) => events.push(e));
  await manager.load();
});

after(async () => {
  await manager?.close();
  try {
    execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
  } catch {
    /* never created */
  }
  rmSync(dir, { recursive: true, force: true });
});

function params(): SetupParams {
  const sandboxId = randomBytes(32).toString('hex');
  return { sandboxId, podName: 'p', podNamespace: 'default', podUid: sandboxId.slice(0, 8), hostname: 'p', dns: { servers: [], searches: [], options: [] }, portMappings: [] };
}

function assertNothingLeft(sandboxId: string): void {
  assert.equal(existsSync(`/run/netns/${netnsNameFor(sandboxId)}`), false, 'netns left');
  const leases = existsSync(join(ipamDir, `vmlet-vmside-${tag}`)) ? readdirSync(join(ipamDir, `vmlet-vmside-${tag}`)).filter((f) => /^\d+\./.test(f)) : [];
  assert.deepEqual(leases, [], 'IPAM lease left');
  assert.deepEqual(readdirSync(join(dir, 'state', 'netd')).filter((f) => f.endsWith('.json')), [], 'netd record left');
}

test('two callers waiting for one VM side share one preparation: both get it, nothing fails', async () => {
  const p = params();
  await manager.setup(p);
  try {
    const [a, b] = await Promise.all([manager.vmNetwork({ sandboxId: p.sandboxId }), manager.vmNetwork({ sandboxId: p.sandboxId })]);
    assert.equal(a.ready, true, JSON.stringify(a));
    assert.deepEqual(b, a);
    assert.deepEqual(events, []);
    const status = await manager.status({ sandboxId: p.sandboxId });
    assert.equal(status?.vmSide, 'ready');
    assert.equal((status?.dhcp as { running: boolean }).running, true);
  } finally {
    await manager.teardown({ sandboxId: p.sandboxId });
  }
  assertNothingLeft(p.sandboxId);
});

test('vmNetwork while the sandbox is torn down is refused and builds nothing again', async () => {
  const p = params();
  await manager.setup(p);
  assert.equal((await manager.vmNetwork({ sandboxId: p.sandboxId })).ready, true);
  const teardown = manager.teardown({ sandboxId: p.sandboxId });
  await assert.rejects(manager.vmNetwork({ sandboxId: p.sandboxId }), FailedPreconditionError);
  await teardown;
  assert.equal(await manager.status({ sandboxId: p.sandboxId }), null);
  await assert.rejects(manager.vmNetwork({ sandboxId: p.sandboxId }), FailedPreconditionError);
  assertNothingLeft(p.sandboxId);
  assert.deepEqual(events, []);
});

test('a VM side still pending when the teardown comes is dropped, never wired', async () => {
  const p = params();
  await manager.setup(p);
  assert.equal((await manager.status({ sandboxId: p.sandboxId }))?.vmSide, 'pending');
  await manager.teardown({ sandboxId: p.sandboxId });
  // Past the idle delay: the dropped preparation does not come back.
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(await manager.status({ sandboxId: p.sandboxId }), null);
  assertNothingLeft(p.sandboxId);
});

test('a VM side nobody asks for is prepared once netd is idle', async () => {
  const p = params();
  await manager.setup(p);
  try {
    let vmSide: string | undefined;
    for (let i = 0; i < 200 && vmSide !== 'ready'; i++) {
      await new Promise((r) => setTimeout(r, 10));
      vmSide = (await manager.status({ sandboxId: p.sandboxId }))?.vmSide;
    }
    assert.equal(vmSide, 'ready');
  } finally {
    await manager.teardown({ sandboxId: p.sandboxId });
  }
  assertNothingLeft(p.sandboxId);
});

test('vmNetworkPlan answers while the wiring still runs, with exactly the network vmNetwork then returns', async () => {
  const p = params();
  await manager.setup(p);
  try {
    const planning = manager.vmNetworkPlan({ sandboxId: p.sandboxId });
    let wired = false;
    const ready = manager.vmNetwork({ sandboxId: p.sandboxId }).then((r) => {
      wired = true;
      return r;
    });
    const plan = await planning;
    assert.equal(plan.ready, true, JSON.stringify(plan));
    assert.equal(wired, false, 'the plan came only after the wiring');
    assert.equal(plan.ready && plan.tapsReady, false, 'a netns of its own gets its TAP only when wired');
    const done = await ready;
    assert.equal(done.ready, true, JSON.stringify(done));
    assert.deepEqual(plan.ready && plan.network, done.ready && done.network);
    // Once prepared, the plan is the prepared network.
    assert.deepEqual(await manager.vmNetworkPlan({ sandboxId: p.sandboxId }), { ...done, tapsReady: true });
    assert.deepEqual(events, []);
  } finally {
    await manager.teardown({ sandboxId: p.sandboxId });
  }
  assertNothingLeft(p.sandboxId);
  await assert.rejects(manager.vmNetworkPlan({ sandboxId: p.sandboxId }), FailedPreconditionError);
});
