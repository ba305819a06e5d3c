import test from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuestAgent } from '../../../src/qmp/guest_agent.js';
import { Code, VmletError } from '../../../src/errors.js';

/** A fake qemu-guest-agent: guest-sync-delimited, guest-exec (`sh -c "exit N"`, `sleep`, `cat`), guest-exec-status. */
async function fakeAgent(path: string, opts: { silent?: boolean } = {}) {
  const procs = new Map<number, { done: number; code: number; out: string }>();
  let nextPid = 100;
  const killed: number[] = [];
  const server = net.createServer((sock) => {
    let buf = '';
    sock.on('data', (d: Buffer) => {
      if (opts.silent) return;
      buf += d.toString('latin1').replace(/\xff/g, '');
      for (let nl; (nl = buf.indexOf('\n')) >= 0; ) {
        const req = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        const a = req.arguments ?? {};
        const reply = (v: unknown) => sock.write(JSON.stringify({ return: v }) + '\n');
        if (req.execute === 'guest-sync-delimited') {
          sock.write(Buffer.concat([Buffer.from('stale garbage\n'), Buffer.from([0xff])]));
          reply(a.id);
        } else if (req.execute === 'guest-ping') {
          reply({});
        } else if (req.execute === 'guest-exec') {
          if (a.path === 'nope') {
            sock.write(JSON.stringify({ error: { class: 'GenericError', desc: 'Failed to execute child process "nope" (No such file or directory)' } }) + '\n');
            continue;
          }
          const pid = nextPid++;
          const input = Buffer.from(a['input-data'] ?? '', 'base64').toString();
          if (a.path === 'kill') {
            killed.push(Number(a.arg[1]));
            procs.set(Number(a.arg[1]), { done: 0, code: 0, out: '' });
            procs.get(Number(a.arg[1]))!.code = -9;
          }
          const code = a.path === 'sh' ? Number(/exit (\d+)/.exec(a.arg[1])?.[1] ?? 0) : 0;
          const done = a.path === 'sleep' ? Date.now() + 60_000 : Date.now() + 30;
          procs.set(pid, { done, code, out: a.path === 'cat' ? input : `ran ${a.path}` });
          reply({ pid });
        } else if (req.execute === 'guest-exec-status') {
          const p = procs.get(a.pid)!;
          if (p.code === -9) reply({ exited: true, signal: 9 });
          else if (Date.now() < p.done) reply({ exited: false });
          else reply({ exited: true, exitcode: p.code, 'out-data': Buffer.from(p.out).toString('base64'), 'err-data': Buffer.from('e').toString('base64') });
        }
      }
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(path, () => r()));
  return { server, killed };
}

test('guest agent exec: exit codes 0, 1, 3, stdin through input-data, output decoded', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-ga-'));
  const { server } = await fakeAgent(join(dir, 'a.sock'));
  const agent = new GuestAgent(join(dir, 'a.sock'), 1000);
  try {
    for (const code of [0, 1, 3]) {
      const r = await agent.exec({ argv: ['sh', '-c', `exit ${code}`] });
      assert.equal(r.exitCode, code);
      assert.equal(r.stdout.toString(), 'ran sh');
      assert.equal(r.stderr.toString(), 'e');
    }
    const cat = await agent.exec({ argv: ['cat'], input: Buffer.from('piped in') });
    assert.equal(cat.stdout.toString(), 'piped in');
    const missing = await agent.exec({ argv: ['nope'] });
    assert.equal(missing.exitCode, 127);
    assert.match(missing.stderr.toString(), /could not run nope/);
  } finally {
    agent.close();
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('guest agent exec: a timeout kills the process in the guest and is DEADLINE_EXCEEDED', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-ga-'));
  const { server, killed } = await fakeAgent(join(dir, 'a.sock'));
  const agent = new GuestAgent(join(dir, 'a.sock'), 1000);
  try {
    const started = Date.now();
    await assert.rejects(agent.exec({ argv: ['sleep', '100'], timeoutMs: 300 }), (err: VmletError) => err.code === Code.DEADLINE_EXCEEDED && /timed out after 300 ms/.test(err.message));
    assert.ok(Date.now() - started < 3000);
    assert.deepEqual(killed, [100]);
  } finally {
    agent.close();
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('guest agent: no agent answering is FAILED_PRECONDITION after the bounded wait; no socket at once', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-ga-'));
  const { server } = await fakeAgent(join(dir, 'a.sock'), { silent: true });
  try {
    const started = Date.now();
    const agent = new GuestAgent(join(dir, 'a.sock'), 400);
    await assert.rejects(agent.exec({ argv: ['true'] }), (err: VmletError) => err.code === Code.FAILED_PRECONDITION && /no guest agent answers/.test(err.message));
    const waited = Date.now() - started;
    assert.ok(waited >= 380 && waited < 2000, `waited ${waited} ms`);
    agent.close();
    const none = new GuestAgent(join(dir, 'missing.sock'), 400);
    await assert.rejects(none.exec({ argv: ['true'] }), (err: VmletError) => err.code === Code.FAILED_PRECONDITION && /not running/.test(err.message));
  } finally {
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
});
