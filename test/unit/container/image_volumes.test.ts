/**
 * Image volumes (CRI Mount.image): the CRI shaping (imageVolumes) and the container flow that
 * turns each into a read-only file disk of the VM, cold (in the defined XML) and warm (plugged
 * through vmlet's QMP socket), against fakes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { containerHarness, containerSpec, until } from '../../helpers/container_harness.js';
import { Gate, TEST_IMAGE } from '../../helpers/fake_container_deps.js';
import { imageVolumes, mounts } from '../../../src/cri/container_create.js';
import { VM_DIR } from '../../../src/container/layout.js';
import { Code } from '../../../src/errors.js';

const BLOB = `/var/lib/vmlet/images/blobs/${'ab'.repeat(32)}`;

test('CRI: an image mount becomes an image volume, not a share; what cannot apply to a disk is refused by name', () => {
  const list = [
    { container_path: '/etc/hosts', host_path: '/var/lib/kubelet/pods/x/etc-hosts', readonly: false },
    { container_path: '/mnt/disk', host_path: '', readonly: true, image: { image: 'vmlet.test/busybox:latest' } },
  ] as Parameters<typeof mounts>[0];
  assert.deepEqual(mounts(list), [{ container_path: '/etc/hosts', host_path: '/var/lib/kubelet/pods/x/etc-hosts', readonly: false }]);
  assert.deepEqual(imageVolumes(list), [{ container_path: '/mnt/disk', image: 'vmlet.test/busybox:latest' }]);
  const bad: [object, RegExp][] = [
    [{ container_path: '/mnt/disk', host_path: '/srv/x', image: { image: 'i:1' } }, /host_path must be empty/],
    [{ container_path: '/mnt/disk', image: { image: 'i:1' }, image_sub_path: 'dir' }, /image_sub_path "dir" cannot apply/],
    [{ container_path: '/mnt/disk', image: { image: 'i:1' }, propagation: 'PROPAGATION_BIDIRECTIONAL' }, /propagation/],
    [{ container_path: '/mnt/disk', image: { image: 'i:1' }, uidMappings: [{ host_id: 1, container_id: 0, length: 1 }] }, /id-mapped/],
    [{ container_path: 'mnt/disk', image: { image: 'i:1' } }, /container_path/],
  ];
  for (const [m, message] of bad) {
    assert.throws(() => imageVolumes([m] as Parameters<typeof mounts>[0]), (err: any) => err.code === Code.INVALID_ARGUMENT && message.test(err.message), String(message));
  }
  assert.throws(
    () => imageVolumes([{ container_path: '/mnt/a', host_path: '/srv/a' }, { container_path: '/mnt/a', image: { image: 'i:1' } }] as Parameters<typeof mounts>[0]),
    /mounted twice/,
  );
});

test('a cold VM gets each image volume as a read-only file disk of the blob, serial from container_path; the record holds the image', async (t) => {
  const h = await containerHarness(t);
  const id = await h.clock.run(h.service.create(containerSpec({ imageVolumes: [{ container_path: '/mnt/disk', image: TEST_IMAGE.repoTags[0]! }] })));
  const r = h.service.get(id)!;
  assert.deepEqual(r.imageMounts, [{ container_path: '/mnt/disk', image: TEST_IMAGE.repoTags[0], imageRef: TEST_IMAGE.id }]);
  const xml = [...h.ops.domains.values()][0]!.xml;
  assert.match(xml, new RegExp(`<disk type="file" device="disk">\\s*<driver name="qemu" type="qcow2"/>\\s*<source file="${BLOB}"/>\\s*<target dev="vdb" bus="virtio"/>\\s*<serial>disk</serial>\\s*<readonly/>`));
});

test('an image volume whose image is not pulled: NOT_FOUND naming it, nothing left behind', async (t) => {
  const h = await containerHarness(t);
  await assert.rejects(
    h.clock.run(h.service.create(containerSpec({ imageVolumes: [{ container_path: '/mnt/disk', image: 'registry.test/vm/data:1' }] }))),
    (err: any) => err.code === Code.NOT_FOUND && /image volume at \/mnt\/disk: image registry\.test\/vm\/data:1 is not present/.test(err.message),
  );
  assert.equal(h.ops.domains.size, 0);
  assert.deepEqual(readdirSync(join(h.root, VM_DIR)), []);
  assert.equal(h.service.list().length, 0);
});

test('a warm VM gets the image volume plugged through QMP, read-only by path, on a free root port', async (t) => {
  const h = await containerHarness(t, { warm: true });
  assert.ok(h.service.claimWarmNetns(containerSpec().sandboxId));
  h.sandboxes.planGate = new Gate();
  const creating = h.service.create(containerSpec({ imageVolumes: [{ container_path: '/data/image', image: TEST_IMAGE.id }] }));
  creating.catch(() => {});
  await until('the root disk plugged', () => h.log.includes('qmp device_add'));
  h.sandboxes.planGate.open();
  const id = await h.clock.run(creating);
  assert.equal(h.service.get(id)!.warm, true);
  const lines = h.log.text().split('\n');
  assert.ok(lines.some((l) => l.includes(`qmp blockdev-add {"driver":"qcow2","node-name":"vmletdata0","read-only":true,"file":{"driver":"file","filename":"${BLOB}","read-only":true}}`)), h.log.text());
  assert.ok(lines.some((l) => l.includes('qmp device_add {"driver":"virtio-blk-pci","id":"vmletdata0","drive":"vmletdata0","serial":"image","bus":"ua-vmletport2"}')), h.log.text());
  assert.ok(!h.log.includes('attachDeviceFlags'));
});
