import { test } from 'node:test';
import assert from 'node:assert/strict';
import { containerCreateHandlers } from '../../../src/cri/container_create.js';
import type { ContainerService } from '../../../src/container/service.js';
import type { ContainerSpec } from '../../../src/container/create.js';
import { Code, VmletError } from '../../../src/errors.js';

/** The handler with a container service that records what it was asked to create. */
function handler(): { create: (devices: unknown[]) => Promise<unknown>; specs: ContainerSpec[] } {
  const specs: ContainerSpec[] = [];
  const service = { create: async (spec: ContainerSpec) => (specs.push(spec), 'c'.repeat(64)) } as unknown as ContainerService;
  const h = containerCreateHandlers(service) as unknown as { CreateContainer: (req: unknown) => Promise<unknown> };
  const create = (devices: unknown[]) =>
    h.CreateContainer({ pod_sandbox_id: 'a'.repeat(64), config: { metadata: { name: 'vm' }, image: { image: 'img' }, devices, mounts: [], envs: [] } });
  return { create, specs };
}

const code = (c: number) => (e: unknown) => e instanceof VmletError && e.code === c;

test('CreateContainer: a container_path "/" device reaches the service as the persistent root; others stay refused', async () => {
  const h = handler();
  await h.create([{ container_path: '/', host_path: '/dev/loop3', permissions: 'mrw' }]);
  assert.deepEqual(h.specs[0]!.devices, [{ container_path: '/', host_path: '/dev/loop3', permissions: 'mrw' }]);
  await h.create([]);
  assert.equal(h.specs[1]!.devices, undefined);
  await assert.rejects(h.create([{ container_path: '/dev/xvda', host_path: '/dev/loop3', permissions: 'rw' }]), code(Code.INVALID_ARGUMENT));
  await assert.rejects(h.create([{ container_path: '/', host_path: '/dev/../etc/passwd', permissions: 'rw' }]), code(Code.INVALID_ARGUMENT));
  await assert.rejects(h.create([{ container_path: '/', host_path: 'loop3', permissions: 'rw' }]), code(Code.INVALID_ARGUMENT));
  await assert.rejects(h.create([{ container_path: '/', host_path: '/dev/loop3', permissions: 'rwx' }]), code(Code.INVALID_ARGUMENT));
  await assert.rejects(h.create([{ container_path: '/', host_path: '/dev/loop3', permissions: 'rr' }]), code(Code.INVALID_ARGUMENT));
  assert.equal(h.specs.length, 2);
});
