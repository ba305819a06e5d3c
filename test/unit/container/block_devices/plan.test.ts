import { test } from 'node:test';
import assert from 'node:assert/strict';
import { posix } from 'node:path';
import { InvalidArgumentError } from '../../../../src/errors.js';
import { assertGolden } from '../../../helpers/golden.js';
import { hashedSerial, planBlockDevices, SERIAL_MAX, type CriDevice, type DeviceInspector, type DeviceKind } from '../../../../src/container/block_devices/plan.js';

/** A file system of nodes and symlinks (absolute targets or relative to the link's directory). */
function fakeFs(nodes: Record<string, DeviceKind>, links: Record<string, string> = {}): DeviceInspector {
  const resolve = (path: string, depth = 0): string => {
    if (depth > 40) throw Object.assign(new Error('loop'), { code: 'ELOOP' });
    const parts = path.split('/').filter(Boolean);
    let cur = '/';
    for (const [i, p] of parts.entries()) {
      const next = posix.join(cur, p);
      const target = links[next];
      if (target !== undefined) {
        const rest = parts.slice(i + 1).join('/');
        return resolve(posix.join(posix.isAbsolute(target) ? target : posix.join(cur, target), rest), depth + 1);
      }
      if (nodes[next] === undefined) throw Object.assign(new Error('missing'), { code: 'ENOENT' });
      cur = next;
    }
    return cur;
  };
  return {
    async lstat(path) {
      if (links[path] !== undefined) return 'symlink';
      return nodes[path];
    },
    async realpath(path) {
      return resolve(path);
    },
  };
}

const fs = fakeFs(
  {
    '/dev': 'dir',
    '/dev/loop3': 'block',
    '/dev/loop4': 'block',
    '/dev/null': 'char',
    '/dev/shm': 'dir',
    '/dev/shm/file': 'file',
    '/tmp': 'dir',
    '/tmp/x': 'dir',
    '/tmp/x/blk': 'block',
    '/tmp/x/file': 'file',
    '/var': 'dir',
    '/var/lib': 'dir',
  },
  {
    '/var/lib/pvc-1': '/dev/loop3', // as kubelet links a pod's volumeDevices entry
    '/dev/escape': '../tmp/x/blk',
    '/dev/dangling': '/dev/loop99',
  },
);

const dev = (host_path: string, container_path: string, permissions = 'mrw'): CriDevice => ({ host_path, container_path, permissions });

test('block device plan: data disks, a symlink resolved to its node, read-only without w, the root disk apart', async () => {
  const plan = await planBlockDevices(
    [dev('/var/lib/pvc-1', '/dev/testpvc'), dev('/dev/loop4', '/dev/data/a-very-long-device-name.img', 'r')],
    fs,
  );
  assertGolden('container/block-devices-plan.json', `${JSON.stringify(plan, null, 2)}\n`);
  assert.deepEqual(plan.dataDisks[0], { hostPath: '/dev/loop3', containerPath: '/dev/testpvc', readOnly: false, serial: 'testpvc' });
  assert.equal(plan.dataDisks[1]!.readOnly, true);
  assert.ok(plan.dataDisks[1]!.serial.length <= SERIAL_MAX);
  assert.equal(plan.root, undefined);
  const withRoot = await planBlockDevices([dev('/dev/loop4', '/'), dev('/dev/loop3', '/dev/vol')], fs);
  assert.deepEqual(withRoot.root, { hostPath: '/dev/loop4', containerPath: '/', readOnly: false, serial: 'vmlet-root' });
  assert.deepEqual(withRoot.dataDisks.map((d) => d.serial), ['vol']);
  assert.deepEqual(await planBlockDevices([], fs), { dataDisks: [] });
});

test('block device serials: stable per container path, unique within a pod, at most 20 plain characters', async () => {
  const plan = await planBlockDevices([dev('/dev/loop3', '/dev/a/disk'), dev('/dev/loop4', '/dev/b/disk')], fs);
  const [a, b] = plan.dataDisks.map((d) => d.serial);
  assert.notEqual(a, b);
  assert.equal(a, hashedSerial('/dev/a/disk'));
  for (const s of [a!, b!, hashedSerial('/x/' + 'ü'.repeat(40)), hashedSerial('/dev/vmlet-root')]) assert.match(s, /^[A-Za-z0-9_-]{1,20}$/);
  // A data disk never takes the root disk's serial.
  const named = await planBlockDevices([dev('/dev/loop3', '/dev/vmlet-root')], fs);
  assert.notEqual(named.dataDisks[0]!.serial, 'vmlet-root');
});

test('block device plan: hostile or unusable devices are refused with INVALID_ARGUMENT naming them', async () => {
  const cases: [CriDevice[], RegExp][] = [
    [[dev('/dev/null', '/dev/x')], /devices\[0\] \("\/dev\/null".*character device/],
    [[dev('/tmp/x/file', '/dev/x')], /regular file/],
    [[dev('/dev/shm/file', '/dev/x')], /\/dev\/shm\/file is a regular file/],
    [[dev('/dev/../tmp/x/blk', '/dev/x')], /not an absolute normalized path/],
    [[dev('/dev/shm/../loop3', '/dev/x')], /not an absolute normalized path/],
    [[dev('dev/loop3', '/dev/x')], /not an absolute normalized path/],
    [[dev('/dev/escape', '/dev/x')], /resolves to \/tmp\/x\/blk, outside \/dev/],
    [[dev('/tmp/x/blk', '/dev/x')], /outside \/dev/],
    [[dev('/dev/missing', '/dev/x')], /does not exist/],
    [[dev('/dev/dangling', '/dev/x')], /cannot be resolved/],
    [[dev('/dev/loop3', 'dev/x')], /container_path must be an absolute normalized path/],
    [[dev('/dev/loop3', '/dev/../x')], /container_path/],
    [[dev('/dev/loop3', '/dev/x/')], /container_path/],
    [[dev('/dev/loop3', '/dev/x\n')], /control characters/],
    [[dev('/dev/loop3', '/dev/x', 'w')], /lack r/],
    [[dev('/dev/loop3', '/dev/x', 'rwx')], /some of r, w, m/],
    [[dev('/dev/loop3', '/dev/x', 'rr')], /some of r, w, m/],
    [[dev('/dev/loop3', '/dev/x'), dev('/dev/loop4', '/dev/x')], /devices\[1\].*given twice/],
    [[dev('/dev/loop3', '/dev/x'), dev('/var/lib/pvc-1', '/dev/y')], /devices\[1\].*\/dev\/loop3 is already attached as \/dev\/x/],
    [Array.from({ length: 9 }, (_, i) => dev('/dev/loop3', `/dev/x${i}`)), /at most 8/],
  ];
  for (const [devices, message] of cases) {
    await assert.rejects(planBlockDevices(devices, fs), (err: unknown) => err instanceof InvalidArgumentError && message.test(err.message), JSON.stringify(devices));
  }
});

test('block device plan: empty permissions are the CRI default (rwm)', async () => {
  const plan = await planBlockDevices([dev('/dev/loop3', '/dev/x', '')], fs);
  assert.equal(plan.dataDisks[0]!.readOnly, false);
});
