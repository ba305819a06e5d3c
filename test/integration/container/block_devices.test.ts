/**
 * Block devices on the real host, no VM: real loop devices (losetup on files in a temp dir,
 * detached in cleanup) and real device nodes. The plan over the real file system refuses hostile
 * devices; a grant gives a node to QEMU's user and records its owner first, so that a vmlet that
 * died before giving it back (a new DeviceGrants over the same directory) restores it.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { InvalidArgumentError, FailedPreconditionError } from '../../../src/errors.js';
import { planBlockDevices } from '../../../src/container/block_devices/plan.js';
import { hostDeviceInspector } from '../../../src/container/block_devices/host_inspector.js';
import { DeviceGrants, hostNodeOps, type NodeOps } from '../../../src/container/block_devices/grants.js';
import { createLogger } from '../../../src/log.js';

const dir = mkdtempSync(join(tmpdir(), 'vmlet-blk-'));
const loops: string[] = [];
const links: string[] = [];
const logger = createLogger('silent');
const qemu = { name: 'vmlet-test-qemu', uid: 64123, gid: 64123 };
const id = (n: number) => String(n).repeat(64).slice(0, 64).replace(/[^0-9a-f]/g, 'a');

after(() => {
  for (const l of links) rmSync(l, { force: true });
  for (const dev of loops) execFileSync('losetup', ['-d', dev]);
  rmSync(dir, { recursive: true, force: true });
});

function loop(name: string): string {
  const file = join(dir, name);
  execFileSync('truncate', ['-s', '1M', file]);
  const dev = execFileSync('losetup', ['-f', '--show', file], { encoding: 'utf8' }).trim();
  loops.push(dev);
  return dev;
}

function owner(path: string): [number, number, number] {
  const st = statSync(path);
  return [st.uid, st.gid, st.mode & 0o7777];
}

test('plan over the real file system: a loop device (also through a /dev symlink) is accepted; hostile devices are refused', async () => {
  const dev = loop('a.img');
  const link = `/dev/vmlet-test-${randomBytes(3).toString('hex')}`;
  symlinkSync(dev, link);
  links.push(link);
  const plan = await planBlockDevices([{ host_path: link, container_path: '/dev/testpvc', permissions: 'mrw' }], hostDeviceInspector);
  assert.deepEqual(plan.dataDisks, [{ hostPath: dev, containerPath: '/dev/testpvc', readOnly: false, serial: 'testpvc' }]);

  const file = join(dir, 'plain');
  writeFileSync(file, 'x');
  const node = join(dir, 'node');
  const { rdev } = statSync(dev);
  execFileSync('mknod', [node, 'b', String((rdev >> 8) & 0xfff), String((rdev & 0xff) | ((rdev >> 12) & 0xfff00))]);
  const escape = `/dev/vmlet-test-${randomBytes(3).toString('hex')}`;
  symlinkSync(node, escape);
  links.push(escape);
  const cases: [string, RegExp][] = [
    ['/dev/null', /\/dev\/null is a character device/],
    [file, /is a regular file/],
    [`/dev/../${dev.slice(1)}`, /not an absolute normalized path/],
    [escape, /resolves to .*\/node, outside \/dev/],
    [node, /outside \/dev/],
    ['/dev/vmlet-test-missing', /does not exist/],
  ];
  for (const [hostPath, message] of cases) {
    await assert.rejects(
      planBlockDevices([{ host_path: hostPath, container_path: '/dev/x', permissions: 'rw' }], hostDeviceInspector),
      (err: unknown) => err instanceof InvalidArgumentError && message.test(err.message),
      hostPath,
    );
  }
});

test('grants: owner recorded before the change, node QEMU\'s alone while granted (0600 / 0400), given back exactly', async () => {
  const rw = loop('rw.img');
  const ro = loop('ro.img');
  chownSync(rw, 0, 6);
  chmodSync(rw, 0o660);
  const before = [owner(rw), owner(ro)];
  const grantsDir = join(dir, 'grants1');
  const grants = new DeviceGrants(grantsDir, logger);
  await grants.grant(id(1), [
    { hostPath: rw, containerPath: '/dev/a', readOnly: false, serial: 'a' },
    { hostPath: ro, containerPath: '/dev/b', readOnly: true, serial: 'b' },
  ], qemu);
  assert.deepEqual(owner(rw), [qemu.uid, 6, 0o600]);
  assert.deepEqual(owner(ro), [qemu.uid, before[1]![1], 0o400]);
  const record = JSON.parse(readFileSync(join(grantsDir, `${id(1)}.json`), 'utf8'));
  assert.deepEqual(record.nodes.map((n: { path: string; uid: number; gid: number; mode: number }) => [n.path, n.uid, n.gid, n.mode]), [[rw, ...before[0]!], [ro, ...before[1]!]]);

  // Another VM cannot take a granted device.
  await assert.rejects(grants.grant(id(2), [{ hostPath: rw, containerPath: '/dev/a', readOnly: false, serial: 'a' }], qemu), FailedPreconditionError);
  assert.deepEqual(readdirSync(grantsDir), [`${id(1)}.json`]);

  // vmlet "crashed": a new instance over the same directory gives the nodes back.
  const afterCrash = new DeviceGrants(grantsDir, logger);
  assert.deepEqual(await afterCrash.list(), [id(1)]);
  await afterCrash.restore(id(1));
  assert.deepEqual([owner(rw), owner(ro)], before);
  assert.deepEqual(readdirSync(grantsDir), []);
  await afterCrash.restore(id(1)); // idempotent
});

test('grants: a failed change gives back what was changed and leaves no record', async () => {
  const a = loop('f1.img');
  const b = loop('f2.img');
  const before = [owner(a), owner(b)];
  const grantsDir = join(dir, 'grants2');
  let calls = 0;
  const failing: NodeOps = {
    ...hostNodeOps,
    chown: async (path, uid, gid) => {
      if (++calls === 2) throw Object.assign(new Error('EPERM: injected'), { code: 'EPERM' });
      return hostNodeOps.chown(path, uid, gid);
    },
  };
  const grants = new DeviceGrants(grantsDir, logger, failing);
  await assert.rejects(grants.grant(id(3), [
    { hostPath: a, containerPath: '/dev/a', readOnly: false, serial: 'a' },
    { hostPath: b, containerPath: '/dev/b', readOnly: false, serial: 'b' },
  ], qemu), /cannot give block devices to QEMU's user vmlet-test-qemu: EPERM/);
  assert.deepEqual([owner(a), owner(b)], before);
  assert.deepEqual(readdirSync(grantsDir), []);
});
