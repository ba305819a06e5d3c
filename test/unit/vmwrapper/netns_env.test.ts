import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../../../src/errors.js';
import { REFUSED_NETNS_PATHS } from './netns_path_cases.js';
import { parseVmwrapperNetnsPath, vmwrapperEnv, vmwrapperNetnsPath } from '../../../src/vmwrapper/netns_env.js';

test('a vmlet netns name becomes the VMLET_NETNS entry for <qemu:env>', () => {
  assert.deepEqual(vmwrapperEnv('vmlet-0a1b2c3d'), [{ name: 'VMLET_NETNS', value: '/run/netns/vmlet-0a1b2c3d' }]);
  assert.equal(parseVmwrapperNetnsPath(vmwrapperNetnsPath('vmlet-x-1')), 'vmlet-x-1');
});


test('anything but /run/netns/<vmlet netns name> is refused', () => {
  for (const path of REFUSED_NETNS_PATHS) {
    assert.equal(parseVmwrapperNetnsPath(path), undefined, JSON.stringify(path));
  }
  for (const name of ['', 'vmlet-', 'other', '../vmlet-a', 'vmlet-a/b', 'vmlet-A']) {
    assert.throws(() => vmwrapperNetnsPath(name), InvalidArgumentError, JSON.stringify(name));
    assert.throws(() => vmwrapperEnv(name), InvalidArgumentError, JSON.stringify(name));
  }
  assert.equal(parseVmwrapperNetnsPath(`/run/netns/vmlet-${'a'.repeat(63)}`), `vmlet-${'a'.repeat(63)}`);
});
