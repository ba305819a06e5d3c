/**
 * QmpSocket against a QEMU stand-in on a unix socket: greeting, capabilities, commands answered in
 * order with events in between, errors as QmpError, a vanished QEMU failing the waiting command.
 * The real QEMU side is exercised by test/integration/e2e/vm_pod.test.ts (warm VM plugging).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpLineReader, QmpSocket } from '../../../src/qmp/socket.js';
import { QmpError } from '../../../src/qmp/errors.js';

test('QmpLineReader keeps partial lines and refuses non-objects', () => {
  const r = new QmpLineReader();
  assert.deepEqual(r.push('{"a":1}\n{"b"'), [{ a: 1 }]);
  assert.deepEqual(r.push(':2}\n\n'), [{ b: 2 }]);
  assert.throws(() => r.push('[1]\n'), /non-object/);
});

async function fakeQemu(t: { after(fn: () => void): void }, onCommand: (cmd: { execute: string }, sock: Socket) => void) {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-qmp-'));
  const path = join(dir, 'qmp');
  const received: string[] = [];
  const server = createServer((sock) => {
    sock.setEncoding('utf8');
    sock.write('{"QMP": {"version": {}, "capabilities": []}}\r\n');
    let buf = '';
    sock.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const cmd = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        received.push(cmd.execute);
        onCommand(cmd, sock);
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { path, received };
}

test('commands go one at a time and get their own answers; events are skipped; errors are QmpError', async (t) => {
  const { path, received } = await fakeQemu(t, (cmd, sock) => {
    if (cmd.execute === 'qmp_capabilities') sock.write('{"return": {}}\n');
    else if (cmd.execute === 'boom') sock.write('{"event": "X", "data": {}}\n{"error": {"class": "GenericError", "desc": "no such thing"}}\n');
    else setTimeout(() => sock.write(`{"timestamp": {}, "event": "DEVICE_ADDED"}\n{"return": "${cmd.execute}"}\n`), 5);
  });
  const qmp = await QmpSocket.connect(path);
  try {
    const [a, b] = await Promise.all([qmp.execute('one'), qmp.execute('two', { x: 1 })]);
    assert.equal(a, 'one');
    assert.equal(b, 'two');
    await assert.rejects(qmp.execute('boom'), (err: unknown) => err instanceof QmpError && /no such thing/.test(err.message));
    assert.equal(await qmp.execute('three'), 'three', 'usable after an error');
    assert.deepEqual(received, ['qmp_capabilities', 'one', 'two', 'boom', 'three']);
  } finally {
    qmp.close();
  }
});

test('a QEMU that goes away fails the waiting command and every later one', async (t) => {
  const { path } = await fakeQemu(t, (cmd, sock) => {
    if (cmd.execute === 'qmp_capabilities') sock.write('{"return": {}}\n');
    else sock.destroy();
  });
  const qmp = await QmpSocket.connect(path);
  await assert.rejects(qmp.execute('device_add'), /closed/);
  await assert.rejects(qmp.execute('device_add'), /closed/);
  qmp.close();
  await assert.rejects(QmpSocket.connect(join(tmpdir(), 'vmlet-no-such-qmp-socket')), /ENOENT/);
});
