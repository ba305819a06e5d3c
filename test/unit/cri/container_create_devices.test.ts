import { test } from 'node:test';
import assert from 'node:assert/strict';
import { containerCreateHandlers } from '../../../src/cri/container_create.js';
import type { ContainerService } from '../../../src/container/service.js';
import type { ContainerSpec } from '../../../src/container/create.js';
import { Code, VmletError } from '../../../src/errors.js';

/** The handler with a container service that records what it was asked to create. */
function handler(): { create: (devices: unknown[], cdi?: unknown[]) => Promise<unknown>; specs: ContainerSpec[] } {
  const specs: ContainerSpec[] = [];
  const service = { create: async (spec: ContainerSpec) => (specs.push(spec), 'c'.repeat(64)) } as unknown as ContainerService;
  const h = containerCreateHandlers(service) as unknown as { CreateContainer: (req: unknown) => Promise<unknown> };
  const create = (devices: unknown[], cdi: unknown[] = []) =>
    h.CreateContainer({ pod_sandbox_id: 'a'.repeat(64), config: { metadata: { name: 'vm' }, image: { image: 'img' }, devices, CDI_devices: cdi, mounts: [], envs: [] } });
  return { create, specs };
}

const code = (c: number) => (e: unknown) => e instanceof VmletError && e.code === c;

test('CreateContainer: the persistent root ("/") and data devices reach the service as given; shape errors and CDI devices are refused', async () => {
  const h = handler();
  const root = { container_path: '/', host_path: '/dev/loop3', permissions: 'mrw' };
  const data = { container_path: '/dev/testpvc', host_path: '/dev/loop4', permissions: 'r' };
  await h.create([root, data]);
  assert.deepEqual(h.specs[0]!.devices, [root, data]);
  await h.create([]);
  assert.deepEqual(h.specs[1]!.devices ?? [], []);
  // What each path is on the host is the container service's check (block_devices/plan.ts).
  await assert.rejects(h.create([{ container_path: '/', host_path: '/dev/loop3', permissions: 'rwmx' }]), code(Code.INVALID_ARGUMENT));
  await assert.rejects(h.create([{ container_path: '/', host_path: '', permissions: 'rw' }]), code(Code.INVALID_ARGUMENT));
  await assert.rejects(h.create([], [{ name: 'vendor.com/gpu=0' }]), code(Code.INVALID_ARGUMENT));
  assert.equal(h.specs.length, 2);
});
