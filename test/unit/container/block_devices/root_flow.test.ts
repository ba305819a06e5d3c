/**
 * The persistent root disk through ContainerService over fakes (container_harness.ts): planned and
 * granted with the data disks (grants.ts), its header read only once granted, the image written
 * instead of an overlay, a cold domain booting a raw slice of the device even when a warm VM was
 * claimed, the grant given back at Remove; refusals change nothing and leave no grant.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { containerHarness, containerSpec } from '../../../helpers/container_harness.js';
import { DeviceGrants, type NodeOps } from '../../../../src/container/block_devices/grants.js';
import type { DeviceInspector } from '../../../../src/container/block_devices/plan.js';
import type { RootDeviceIo } from '../../../../src/container/block_devices/persistent_root.js';
import { HEAD_BYTES, ROOT_PAYLOAD_OFFSET, decodeRootHeader } from '../../../../src/container/block_devices/root_header.js';
import { TEST_IMAGE } from '../../../helpers/fake_container_deps.js';
import { silentLogger } from '../../../../src/log.js';
import { Code, VmletError } from '../../../../src/errors.js';
import { BLOCK_GRANTS_DIR } from '../../../../src/container/layout.js';

const MIB = 1024 * 1024;
const ROOT_DEV = '/dev/fakeroot';
const DATA_DEV = '/dev/fakedata';

/** Block devices: two nodes under /dev, the root one a buffer; every device call logged. */
function fakeBlockHost(deviceBytes: number, head?: Buffer) {
  const bytes = Buffer.alloc(Math.min(deviceBytes, HEAD_BYTES));
  head?.copy(bytes);
  const calls: string[] = [];
  const inspector: DeviceInspector = {
    lstat: async (p) => ([ROOT_DEV, DATA_DEV].includes(p) ? 'block' : undefined),
    realpath: async (p) => p,
  };
  const nodes: NodeOps = {
    stat: async (p) => ({ uid: 0, gid: 6, mode: 0o60660, rdev: p === ROOT_DEV ? 0x701 : 0x702 }),
    chown: async () => {},
    chmod: async () => {},
  };
  const rootIo: RootDeviceIo = {
    sizeBytes: async () => deviceBytes,
    readHead: async (d, n) => (calls.push(`read head ${d}`), Buffer.from(bytes.subarray(0, n))),
    writeHeader: async (d, h) => (calls.push(`write header ${d}`), void h.copy(bytes, 0)),
    writeImage: async (image, d, offset) => void calls.push(`write image ${image.digest} ${d}@${offset}`),
  };
  const openDevice = async (d: string, readOnly: boolean) => (calls.push(`open ${d} ${readOnly ? 'ro' : 'rw'}`), { fd: 7, close: async () => {} });
  return { calls, bytes, host: (root: string) => ({ inspector, grants: new DeviceGrants(join(root, BLOCK_GRANTS_DIR), silentLogger, nodes), rootIo, openDevice }) };
}

const rootDevice = (permissions = 'mrw') => ({ container_path: '/', host_path: ROOT_DEV, permissions });
const grantsIn = (root: string) => (existsSync(join(root, BLOCK_GRANTS_DIR)) ? readdirSync(join(root, BLOCK_GRANTS_DIR)) : []);

test('a root device: granted, initialised instead of an overlay, a cold domain on a raw slice (the claimed warm VM discarded), given back at Remove', async (t) => {
  const dev = fakeBlockHost(128 * MIB);
  const h = await containerHarness(t, { warm: true, blockDevices: dev.host });
  assert.ok(h.service.claimWarmNetns(containerSpec().sandboxId));
  const id = await h.clock.run(h.service.create(containerSpec({ devices: [rootDevice(), { container_path: '/dev/data', host_path: DATA_DEV, permissions: 'r' }] })));
  const r = h.service.get(id)!;
  assert.equal(r.warm, undefined, 'not a warm VM');
  assert.doesNotMatch(r.domainName, /^vmlet-warm-/);
  assert.deepEqual(r.persistentRoot, { device: ROOT_DEV, offset: ROOT_PAYLOAD_OFFSET, size: 128 * MIB - ROOT_PAYLOAD_OFFSET });
  assert.equal(existsSync(join(r.dir, 'root.qcow2')), false, 'no overlay');
  assert.deepEqual(dev.calls, [`read head ${ROOT_DEV}`, `write header ${ROOT_DEV}`, `write image ${TEST_IMAGE.id} ${ROOT_DEV}@${ROOT_PAYLOAD_OFFSET}`, `write header ${ROOT_DEV}`]);
  const header = decodeRootHeader(dev.bytes);
  assert.equal(header.kind === 'vmlet' && header.header.complete && header.header.imageDigest, TEST_IMAGE.id);
  assert.deepEqual(grantsIn(h.root), [`${id}.json`]);
  const xml = h.ops.domains.get(r.domainName)!.xml;
  assert.match(xml, new RegExp(`<source dev="${ROOT_DEV}">\\s*<slices>\\s*<slice type="storage" offset="${ROOT_PAYLOAD_OFFSET}" size="${128 * MIB - ROOT_PAYLOAD_OFFSET}"/>`));
  assert.match(xml, new RegExp(`<source dev="${DATA_DEV}"/>`));
  assert.ok(![...h.ops.domains.keys()].some((n) => n.startsWith('vmlet-warm-') && h.ops.domains.get(n)!.xml.includes(id)), 'the claimed warm VM is not this container\'s');

  // A second container on the same device (another sandbox) is refused while the first holds it.
  const other = `5c${'0'.repeat(62)}`;
  h.sandboxes.records.set(other, { ...h.sandboxes.records.get(containerSpec().sandboxId)!, id: other });
  const taken = h.clock.run(h.service.create(containerSpec({ sandboxId: other, devices: [rootDevice()] })));
  await assert.rejects(taken, (e: unknown) => e instanceof VmletError && e.code === Code.FAILED_PRECONDITION && /attached to container/.test(e.message));
  assert.equal(dev.calls.length, 4, 'the refused container read nothing off the device');

  await h.clock.run(h.service.remove(id));
  assert.deepEqual(grantsIn(h.root), [], 'given back at Remove');
});

test('a root device already holding the image boots as it is: nothing written', async (t) => {
  const first = fakeBlockHost(128 * MIB);
  const h1 = await containerHarness(t, { blockDevices: first.host });
  await h1.clock.run(h1.service.create(containerSpec({ devices: [rootDevice()] })));
  const dev = fakeBlockHost(128 * MIB, first.bytes);
  const h = await containerHarness(t, { blockDevices: dev.host });
  await h.clock.run(h.service.create(containerSpec({ devices: [rootDevice()] })));
  assert.deepEqual(dev.calls, [`read head ${ROOT_DEV}`]);
});

test('refused root devices: read-only (INVALID_ARGUMENT), a newer header (FAILED_PRECONDITION), too small (INVALID_ARGUMENT); nothing written, no grant, no VM dir', async (t) => {
  const newer = Buffer.alloc(512);
  Buffer.from('VMLET-ROOT-DISK\n').copy(newer);
  newer.writeUInt32LE(2, 16);
  const cases: [string, ReturnType<typeof fakeBlockHost>, string, number, RegExp][] = [
    ['read-only', fakeBlockHost(128 * MIB), 'r', Code.INVALID_ARGUMENT, /permissions lack "w"/],
    ['newer header', fakeBlockHost(128 * MIB, newer), 'rw', Code.FAILED_PRECONDITION, /newer than this vmlet/],
    ['too small', fakeBlockHost(32 * MIB), 'rw', Code.INVALID_ARGUMENT, /does not fit/],
  ];
  for (const [name, dev, permissions, code, message] of cases) {
    const h = await containerHarness(t, { blockDevices: dev.host });
    await assert.rejects(h.clock.run(h.service.create(containerSpec({ devices: [rootDevice(permissions)] }))), (e: unknown) => e instanceof VmletError && e.code === code && message.test(e.message), name);
    assert.deepEqual(dev.calls.filter((c) => c.startsWith('write')), [], name);
    assert.deepEqual(grantsIn(h.root), [], name);
    assert.deepEqual(readdirSync(join(h.root, 'vms')).filter((n) => /^[0-9a-f]{64}$/.test(n)), [], name);
    assert.equal(h.ops.domains.size, 0, name);
  }
});
