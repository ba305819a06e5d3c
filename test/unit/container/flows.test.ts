/**
 * Golden call logs of whole container flows (the calls a container's life makes into libvirt,
 * QMP, the console pumps and netd), against fakes: cold and warm VMs through create, start,
 * stop and remove; creates that fail half-way and roll back; reconcile with domains no record
 * owns. test/golden/container/*.log; UPDATE_GOLDEN=1 rewrites them (review the diff).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { assertGolden } from '../../helpers/golden.js';
import { containerHarness, containerSpec, HOST, until } from '../../helpers/container_harness.js';
import { Gate } from '../../helpers/fake_container_deps.js';
import { buildDomainXml } from '../../../src/libvirt/domain_xml.js';
import { DomainState } from '../../../src/libvirt/client.js';
import { VM_DIR } from '../../../src/container/layout.js';
import { InvalidArgumentError } from '../../../src/errors.js';

/** A warm create in a fixed order: netd's plan only once the root disk is in (then NICs, then the seed). */
async function createWarm(h: Awaited<ReturnType<typeof containerHarness>>, spec = containerSpec()): Promise<string> {
  h.sandboxes.planGate = new Gate();
  const creating = h.service.create(spec);
  creating.catch(() => {});
  await until('the root disk plugged', () => h.log.includes('qmp device_add'));
  h.sandboxes.planGate.open();
  return h.clock.run(creating);
}

test('a cold VM: create defines the domain, start creates it, stop powers it off by ACPI, remove undefines it', async (t) => {
  const h = await containerHarness(t);
  h.ops.guest = { acpi: 'obeys', acpiMs: 2500 };
  h.log.step('CreateContainer');
  const id = await h.clock.run(h.service.create(containerSpec()));
  const r = h.service.get(id)!;
  assert.equal(r.state, 'CREATED');
  assert.ok(existsSync(join(r.dir, 'root.qcow2')) && existsSync(join(r.dir, 'seed.iso')));
  h.log.step('StartContainer');
  await h.clock.run(h.service.start(id));
  assert.equal(h.service.get(id)!.state, 'RUNNING');
  h.log.step('StopContainer timeout=30');
  await h.clock.run(h.service.stop(id, 30));
  assert.deepEqual([h.service.get(id)!.state, h.service.get(id)!.exitCode, h.service.get(id)!.reason], ['EXITED', 0, 'Completed']);
  h.log.step('RemoveContainer');
  await h.clock.run(h.service.remove(id));
  assert.equal(h.service.get(id), undefined);
  assert.equal(h.ops.domains.size, 0);
  assert.ok(!existsSync(r.dir));
  assertGolden('container/cold_flow.log', h.log.text());
});

test('a warm VM: create plugs disk, NICs and seed in through QMP as each exists; start sends cont; remove destroys it', async (t) => {
  const h = await containerHarness(t, { warm: true });
  h.ops.guest = { acpi: 'obeys', acpiMs: 2500 };
  h.log.step('RunPodSandbox claims the warm VM');
  assert.ok(h.service.claimWarmNetns(containerSpec().sandboxId));
  h.log.step('CreateContainer');
  const id = await createWarm(h, containerSpec({ resources: { cpuShares: '512' } }));
  const r = h.service.get(id)!;
  assert.equal(r.warm, true);
  assert.match(r.domainName, /^vmlet-warm-/);
  assert.equal(h.qmp.open.size, 0, 'the QMP socket is closed once the pieces are in');
  h.log.step('StartContainer');
  await h.clock.run(h.service.start(id));
  assert.equal(h.service.get(id)!.state, 'RUNNING');
  h.log.step('StopContainer timeout=30');
  await h.clock.run(h.service.stop(id, 30));
  assert.equal(h.service.get(id)!.exitCode, 0);
  h.log.step('RemoveContainer');
  await h.clock.run(h.service.remove(id));
  assert.equal(h.ops.domains.size, 0);
  assert.deepEqual(readdirSync(join(h.root, VM_DIR)), []);
  assertGolden('container/warm_flow.log', h.log.text());
});

test('a cold create whose define fails rolls back: no directory, no domain, the name is free again', async (t) => {
  const h = await containerHarness(t);
  h.ops.failNext('defineXml', new Error('libvirt: XML error (fake)'));
  h.log.step('CreateContainer (define fails)');
  await assert.rejects(h.clock.run(h.service.create(containerSpec())), /XML error/);
  assert.deepEqual(readdirSync(join(h.root, VM_DIR)), []);
  assert.equal(h.ops.domains.size, 0);
  assert.deepEqual(h.service.list(), []);
  h.log.step('CreateContainer again');
  const id = await h.clock.run(h.service.create(containerSpec()));
  assert.equal(h.service.get(id)!.state, 'CREATED');
  assertGolden('container/cold_create_rollback.log', h.log.text());
});

test('a warm create whose NIC hot-plug fails rolls back: pump stopped, warm VM discarded, directory gone', async (t) => {
  const h = await containerHarness(t, { warm: true });
  assert.ok(h.service.claimWarmNetns(containerSpec().sandboxId));
  h.qmp.failCommand = 'netdev_add';
  h.log.step('CreateContainer (netdev_add fails)');
  await assert.rejects(createWarm(h), /netdev_add failed/);
  assert.equal(h.ops.domains.size, 0, 'the warm domain is destroyed and undefined');
  assert.deepEqual(readdirSync(join(h.root, VM_DIR)), []);
  assert.equal(h.consoles.running.size, 0);
  assert.equal(h.qmp.open.size, 0);
  assert.deepEqual(h.service.list(), []);
  assertGolden('container/warm_create_rollback.log', h.log.text());
});

test('a refused mount on a sandbox with a claimed warm VM rolls it back: no domain, no directory, nothing created', async (t) => {
  const h = await containerHarness(t, { warm: true });
  assert.ok(h.service.claimWarmNetns(containerSpec().sandboxId));
  // This harness has no volume host: any mount is refused (INVALID_ARGUMENT), as a hostile host path is.
  const spec = containerSpec({ mounts: [{ container_path: '/etc/hosts', host_path: '/var/lib/kubelet/pods/u/etc-hosts', readonly: false }] });
  await assert.rejects(h.clock.run(h.service.create(spec)), (err: Error) => err instanceof InvalidArgumentError && /config\.mounts/.test(err.message));
  assert.equal(h.ops.domains.size, 0, 'the adopted warm domain is destroyed and undefined, not left running outside the pool');
  assert.deepEqual(readdirSync(join(h.root, VM_DIR)), []);
  assert.equal(h.consoles.running.size, 0);
  assert.deepEqual(h.service.list(), []);
});

test('a warm VM that cannot take the pod\'s NICs is discarded and the container gets a cold VM', async (t) => {
  const h = await containerHarness(t, { warm: true });
  assert.ok(h.service.claimWarmNetns(containerSpec().sandboxId));
  h.sandboxes.network = { ...h.sandboxes.network, interfaces: [{ ...h.sandboxes.network.interfaces[0]!, binding: { kind: 'sriov', pciAddress: '0000:3b:02.1' } }] };
  h.log.step('CreateContainer (SR-IOV NIC)');
  const id = await createWarm(h);
  const r = h.service.get(id)!;
  assert.equal(r.warm, undefined);
  assert.match(r.domainName, /^vmlet-5b0000000000-/);
  assert.deepEqual([...h.ops.domains.keys()], [r.domainName]);
  assertGolden('container/warm_to_cold.log', h.log.text());
});

test('reconcile removes a domain of this vmlet no record owns, keeps other vmlets\' and foreign domains, and marks a vanished VM EXITED', async (t) => {
  const h = await containerHarness(t);
  const id = await h.clock.run(h.service.create(containerSpec()));
  await h.clock.run(h.service.start(id));
  const domainXml = (name: string, owner: string, containerId: string) =>
    buildDomainXml({
      name,
      uuid: `00000000-0000-4000-8000-${name.length.toString(16).padStart(12, 'f')}`,
      domainType: 'qemu',
      emulator: HOST.emulator,
      memoryBytes: HOST.defaultMemoryBytes,
      vcpus: 1,
      console: { kind: 'file', path: '/dev/null' },
      nics: [],
      emulatorEnv: [],
      warm: { hotplugPorts: 2 },
      metadata: { sandboxId: 'sb', containerId, owner },
    });
  h.ops.addDomain(domainXml('vmlet-orphan', h.owner, 'd'.repeat(64)), DomainState.RUNNING);
  h.ops.addDomain(domainXml('vmlet-of-another-vmlet', '0123456789abcdef', 'e'.repeat(64)), DomainState.RUNNING);
  h.ops.addDomain(domainXml('someone-elses-vm', h.owner, 'f'.repeat(64)), DomainState.RUNNING);
  // The container's VM went away while vmlet was not listening.
  h.ops.domains.delete(h.service.get(id)!.domainName);
  h.log.lines.length = 0;
  h.log.step('reconcile');
  await h.clock.run(h.service.reconcile());
  assert.deepEqual([...h.ops.domains.keys()].sort(), ['someone-elses-vm', 'vmlet-of-another-vmlet']);
  const r = h.service.get(id)!;
  assert.deepEqual([r.state, r.exitCode, r.message], ['EXITED', 255, 'libvirt domain vanished']);
  assertGolden('container/reconcile_orphans.log', h.log.text());
});
