import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blockLinkBootcmd } from '../../../../src/container/block_devices/guest_links.js';
import { devices } from '../../../../src/cri/container_create.js';
import { InvalidArgumentError } from '../../../../src/errors.js';

test('CRI devices are shaped as given (checked later by the plan); oversize or control characters refused', () => {
  assert.deepEqual(devices([{ container_path: '/dev/x', host_path: '/dev/loop3', permissions: 'mrw' }, { container_path: '/dev/y', host_path: '/dev/loop4' }]), [
    { container_path: '/dev/x', host_path: '/dev/loop3', permissions: 'mrw' },
    { container_path: '/dev/y', host_path: '/dev/loop4', permissions: '' },
  ]);
  assert.throws(() => devices([{ container_path: '/dev/x', host_path: '' }]), InvalidArgumentError);
  assert.throws(() => devices([{ container_path: '/dev/x', host_path: '/dev/loop3', permissions: 'rwmx' }]), InvalidArgumentError);
  assert.throws(() => devices([{ container_path: '/dev/x\u0001', host_path: '/dev/loop3' }]), InvalidArgumentError);
});

test('guest link bootcmd, run by sh over a fake sysfs: links container_path to the disk with that serial, never replaces a node', () => {
  const root = mkdtempSync(join(tmpdir(), 'vmlet-links-'));
  try {
    const [cmd] = blockLinkBootcmd([{ hostPath: '/dev/loop3', containerPath: `${root}/dev/sub/testpvc`, readOnly: false, serial: 'testpvc' }]);
    assert.equal(cmd![0], 'sh');
    const script = cmd![2]!.replaceAll('/sys/block', `${root}/sys`).replace('dev=/dev/', `dev=${root}/dev/`);
    for (const [name, serial] of [['vdb', 'other'], ['vdc', 'testpvc']]) {
      mkdirSync(join(root, 'sys', name!), { recursive: true });
      writeFileSync(join(root, 'sys', name!, 'serial'), `${serial}\n`);
    }
    execFileSync('sh', ['-c', script, cmd![3]!, cmd![4]!, cmd![5]!]);
    assert.equal(readlinkSync(`${root}/dev/sub/testpvc`), `${root}/dev/vdc`);
    writeFileSync(`${root}/dev/real`, '');
    assert.throws(() => execFileSync('sh', ['-c', script, 'x', 'testpvc', `${root}/dev/real`], { stdio: 'pipe' }), /exists and is not a link/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
