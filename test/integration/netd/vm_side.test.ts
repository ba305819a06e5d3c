/**
 * netd's NetworkManager driven directly against real namespaces and Debian's bridge plugin: the
 * VM side of a sandbox (wiring, DHCP) against concurrent callers and teardown. Pod network in
 * 198.18.0.0/15, no masquerade; every test checks that nothing is left.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import type { NetworkManager } from '../../../src/netd/manager.js';
import type { NetdEvent } from '../../../src/netd/protocol.js';
import { netnsNameFor } from '../../../src/network/names.js';
import { FailedPreconditionError } from '../../../src/errors.js';
import { bridgeNetwork, sandboxParams as params } from './bridge_network.js';

const network = bridgeNetwork('vmside', '198.18.78.0/24');
const events: NetdEvent[] = [];
let manager: NetworkManager;

before(async () => {
  manager = await network.startManager((e) => events.push(e));
});

after(async () => {
  await manager?.close();
  network.remove();
});

function assertNothingLeft(sandboxId: string): void {
  assert.equal(existsSync(`/run/netns/${netnsNameFor(sandboxId)}`), false, 'netns left');
  assert.deepEqual(network.leases(), [], 'IPAM lease left');
  assert.deepEqual(network.records(), [], 'netd record left');
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

test('teardown gives the veth back for CNI DEL and leaves bridge and TAP to the netns: they go with it, none reaches the host', async () => {
  const p = params();
  await manager.setup(p);
  const hostPorts = () => readdirSync(`/sys/class/net/${network.bridge}/brif`);
  let ours: string[] = [];
  try {
    const vm = await manager.vmNetwork({ sandboxId: p.sandboxId });
    assert.equal(vm.ready, true, JSON.stringify(vm));
    const binding = vm.ready ? vm.network.interfaces[0]!.binding : undefined;
    assert.equal(binding?.kind, 'tap');
    if (binding?.kind === 'tap') ours = [binding.tap, binding.bridge];
  } finally {
    const before = hostPorts().length;
    await manager.teardown({ sandboxId: p.sandboxId });
    // CNI DEL deleted the pod's veth, and with it its host end on the CNI bridge.
    assert.equal(hostPorts().length, before - 1, 'the host end of the veth is gone when teardown answers');
  }
  assertNothingLeft(p.sandboxId);
  assert.equal(ours.length, 2);
  // The kernel frees the netns's own devices after the call; devices of a dying netns that have
  // link ops (bridge, tun) are deleted, never given back to the host.
  for (let i = 0; i < 20; i++) {
    for (const name of ours) assert.equal(existsSync(`/sys/class/net/${name}`), false, `${name} reached the host`);
    await new Promise((r) => setTimeout(r, 50));
  }
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
