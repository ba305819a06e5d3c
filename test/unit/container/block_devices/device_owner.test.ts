import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEVICE_MODE, deviceOwnersDir, giveDevice, returnDevice, returnUnheldDevices } from '../../../../src/container/block_devices/device_owner.js';

const QEMU = { name: 'vmlet-qemu-test', uid: 64123, gid: 64124 };

// A regular file stands in for the device node: ownership and mode work the same way.
test('a device node is QEMU\'s while any holder has it, then gets its recorded owner and mode back', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-devown-'));
  try {
    const node = join(dir, 'loop9');
    writeFileSync(node, '');
    chownSync(node, 6, 6);
    chmodSync(node, 0o660);
    const owners = deviceOwnersDir(join(dir, 'state', 'vms'));
    assert.equal(owners, join(dir, 'state', 'device-owners'));
    await giveDevice(owners, node, 'c1', QEMU);
    let st = statSync(node);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [QEMU.uid, QEMU.gid, DEVICE_MODE]);
    assert.equal(readdirSync(owners).length, 1, 'the original owner is on disk while the node is changed');
    await giveDevice(owners, node, 'c2', QEMU);
    await giveDevice(owners, node, 'c2', QEMU); // idempotent
    await returnDevice(owners, node, 'c1');
    st = statSync(node);
    assert.equal(st.uid, QEMU.uid, 'c2 still holds it');
    await returnDevice(owners, node, 'c2');
    st = statSync(node);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [6, 6, 0o660]);
    assert.deepEqual(readdirSync(owners), []);
    await returnDevice(owners, node, 'c2'); // nothing held: nothing happens
    await giveDevice(owners, node, 'c3', undefined); // QEMU as root: nothing to change
    assert.equal(statSync(node).uid, 6);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('reconcile: holders without a record give their devices back; live ones keep theirs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-devown-'));
  try {
    const a = join(dir, 'loopa');
    const b = join(dir, 'loopb');
    for (const n of [a, b]) {
      writeFileSync(n, '');
      chownSync(n, 6, 6);
      chmodSync(n, 0o640);
    }
    const owners = join(dir, 'device-owners');
    await giveDevice(owners, a, 'gone', QEMU);
    await giveDevice(owners, b, 'live', QEMU);
    await giveDevice(owners, b, 'gone2', QEMU);
    assert.deepEqual(await returnUnheldDevices(owners, (h) => h === 'live'), [a]);
    assert.deepEqual([statSync(a).uid, statSync(a).mode & 0o7777], [6, 0o640]);
    assert.equal(statSync(b).uid, QEMU.uid);
    assert.equal(readdirSync(owners).length, 1);
    assert.deepEqual(await returnUnheldDevices(join(dir, 'none'), () => false), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
