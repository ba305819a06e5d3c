/**
 * QmpSocket.executeWithFd against a real QEMU (`-machine none`, no guest, ~0.1 s to start): the fd
 * goes over the QMP socket as SCM_RIGHTS (native sendFd), QEMU keeps it in an fd set, a block node
 * opens /dev/fdset/N and QEMU then holds the file; remove-fd leaves the node's duplicate (once the
 * VM runs); blockdev-del closes it. A bad fd is refused without spoiling the session.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpSocket } from '../../../src/qmp/socket.js';
import { waitFor } from '../../helpers/e2e.js';

const dir = mkdtempSync(join(tmpdir(), 'vmlet-addfd-'));
let qemu: ChildProcess | undefined;

after(() => {
  qemu?.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function heldBy(pid: number): string[] {
  return readdirSync(`/proc/${pid}/fd`).map((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      return '';
    }
  });
}

test('add-fd with an fd vmlet opened: QEMU opens /dev/fdset/N on it; a bad fd is refused and the session goes on', { timeout: 60_000 }, async () => {
  const path = join(dir, 'qmp');
  qemu = spawn('qemu-system-x86_64', ['-machine', 'none', '-nodefaults', '-display', 'none', '-S', '-qmp', `unix:${path},server=on,wait=off`], { stdio: 'ignore' });
  const disk = join(dir, 'disk.raw');
  writeFileSync(disk, Buffer.alloc(1024 * 1024));
  let qmp = await waitFor('QEMU\'s QMP socket', 30_000, () => QmpSocket.connect(path, 2_000).catch(() => undefined));
  const fd = openSync(disk, 'r+');
  try {
    const reply = (await qmp.executeWithFd('add-fd', { opaque: 'vmlet-test' }, fd)) as { 'fdset-id': number; fd: number };
    assert.equal(typeof reply['fdset-id'], 'number');
    assert.ok(heldBy(qemu.pid!).includes(disk), 'QEMU holds the file it never opened by path');
    await qmp.execute('blockdev-add', { driver: 'raw', 'node-name': 'd0', file: { driver: 'file', filename: `/dev/fdset/${reply['fdset-id']}` } });
    await qmp.execute('remove-fd', { 'fdset-id': reply['fdset-id'] });
    const blocks = (await qmp.execute('query-named-block-nodes')) as { 'node-name': string; file: string }[];
    assert.ok(blocks.some((b) => b['node-name'] === 'd0' && b.file === `/dev/fdset/${reply['fdset-id']}`), JSON.stringify(blocks));
    // QEMU 7.2 closes a removed set's fd only while the VM runs (monitor_fdset_cleanup checks
    // runstate_is_running): paused, the set's copy and the node's duplicate are both open ...
    assert.equal(heldBy(qemu.pid!).filter((p) => p === disk).length, 2);
    // ... and once running, the next clean-up (a monitor disconnecting: vmlet's session after
    // `cont` does) leaves only the node's.
    await qmp.execute('cont');
    qmp.close();
    qmp = await QmpSocket.connect(path);
    assert.equal(heldBy(qemu.pid!).filter((p) => p === disk).length, 1, 'only the node\'s duplicate is left');
    await qmp.execute('blockdev-del', { 'node-name': 'd0' });
    await waitFor('the fd gone with the node', 5_000, () => (heldBy(qemu!.pid!).includes(disk) ? undefined : true));
  } finally {
    closeSync(fd);
  }
  await assert.rejects(qmp.executeWithFd('add-fd', {}, 987_654), /sendmsg: Bad file descriptor/);
  await assert.rejects(qmp.executeWithFd('add-fd', {}, -1), /not an fd/);
  assert.deepEqual(await qmp.execute('query-fdsets'), [], 'nothing half-added; the session still answers');
  qmp.close();
});
