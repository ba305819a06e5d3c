import test from 'node:test';
import assert from 'node:assert/strict';
import { AgentUnavailableError, GuestAgent, GuestAgentError, type AgentChannel } from '../../../src/qmp/guest_agent.js';
import { LibvirtAgentChannel } from '../../../src/libvirt/agent_channel.js';
import { LibvirtError } from '../../../src/libvirt/rpc/errors.js';
import { Code, FailedPreconditionError, VmletError } from '../../../src/errors.js';

/** A fake qemu-guest-agent behind the channel: guest-exec (`sh -c "exit N"`, `sleep`, `cat`, `kill`), guest-exec-status. */
function fakeAgent(opts: { unresponsiveAfterMs?: number; answersFrom?: number } = {}) {
  const procs = new Map<number, { done: number; code: number; out: string }>();
  let nextPid = 100;
  const killed: number[] = [];
  const commands: string[] = [];
  const channel: AgentChannel = {
    async command(execute, args, timeoutMs) {
      commands.push(execute);
      assert.ok(timeoutMs > 0);
      if (opts.unresponsiveAfterMs !== undefined) {
        await new Promise((r) => setTimeout(r, opts.unresponsiveAfterMs));
        throw new AgentUnavailableError('no guest agent answers in test (QEMU guest agent is not connected): is qemu-guest-agent running in the guest?');
      }
      // A guest still booting: libvirt answers "not connected" at once until the agent runs.
      if (opts.answersFrom !== undefined && Date.now() < opts.answersFrom) {
        throw new AgentUnavailableError('no guest agent answers in test (QEMU guest agent is not connected): is qemu-guest-agent running in the guest?');
      }
      const a = (args ?? {}) as Record<string, any>;
      if (execute === 'guest-ping') return {};
      if (execute === 'guest-exec') {
        if (a.path === 'nope') throw new GuestAgentError('GenericError', 'Failed to execute child process "nope" (No such file or directory)');
        const pid = nextPid++;
        const input = Buffer.from(a['input-data'] ?? '', 'base64').toString();
        if (a.path === 'kill') {
          killed.push(Number(a.arg[1]));
          procs.set(Number(a.arg[1]), { done: 0, code: -9, out: '' });
        }
        const code = a.path === 'sh' ? Number(/exit (\d+)/.exec(a.arg[1])?.[1] ?? 0) : 0;
        const done = a.path === 'sleep' ? Date.now() + 60_000 : Date.now() + 30;
        procs.set(pid, { done, code, out: a.path === 'cat' ? input : `ran ${a.path}` });
        return { pid };
      }
      if (execute === 'guest-exec-status') {
        const p = procs.get(a.pid)!;
        if (p.code === -9) return { exited: true, signal: 9 };
        if (Date.now() < p.done) return { exited: false };
        return { exited: true, exitcode: p.code, 'out-data': Buffer.from(p.out).toString('base64'), 'err-data': Buffer.from('e').toString('base64') };
      }
      throw new GuestAgentError('CommandNotFound', `The command ${execute} has not been found`);
    },
  };
  return { channel, killed, commands };
}

test('guest agent exec: exit codes 0, 1, 3, stdin through input-data, output decoded', async () => {
  const { channel } = fakeAgent();
  const agent = new GuestAgent(channel);
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
});

test('guest agent exec: a timeout kills the process in the guest and is DEADLINE_EXCEEDED', async () => {
  const { channel, killed } = fakeAgent();
  const agent = new GuestAgent(channel);
  const started = Date.now();
  await assert.rejects(agent.exec({ argv: ['sleep', '100'], timeoutMs: 300 }), (err: VmletError) => err.code === Code.DEADLINE_EXCEEDED && /timed out after 300 ms/.test(err.message));
  assert.ok(Date.now() - started < 3000);
  assert.deepEqual(killed, [100]);
});

test('guest agent: no agent answering is FAILED_PRECONDITION; a closed agent refuses at once', async () => {
  const agent = new GuestAgent(fakeAgent({ unresponsiveAfterMs: 50 }).channel);
  await assert.rejects(agent.exec({ argv: ['true'] }), (err: VmletError) => err.code === Code.FAILED_PRECONDITION && /no guest agent answers/.test(err.message));
  const { channel, commands } = fakeAgent();
  const closed = new GuestAgent(channel);
  closed.close();
  await assert.rejects(closed.ready(), (err: VmletError) => err.code === Code.FAILED_PRECONDITION);
  assert.deepEqual(commands, []);
});

function libvirtError(code: number, message: string): LibvirtError {
  return new LibvirtError({ code, domain: 10, message, level: 2, dom: null, str1: null, str2: null, str3: null, int1: 0, int2: 0 }, 3);
}

test('the libvirt channel: the JSON command goes to virDomainQemuAgentCommand; libvirt errors become the agent errors', async () => {
  const dom = { name: 'vmlet-x', uuid: '00000000-0000-0000-0000-000000000001', id: 7 };
  const sent: { command: string; timeout: number }[] = [];
  let fail: Error | undefined;
  const ops = {
    async qemuAgentCommand(_d: typeof dom, command: string, timeoutSeconds: number) {
      sent.push({ command, timeout: timeoutSeconds });
      if (fail) throw fail;
      return '{"return":{"pid":42}}';
    },
  };
  let present = true;
  const channel = new LibvirtAgentChannel(() => ops, async () => (present ? dom : undefined), 'container c1');
  assert.deepEqual(await channel.command('guest-exec', { path: 'echo', arg: ['hi'] }, 2500), { pid: 42 });
  assert.deepEqual(sent, [{ command: '{"execute":"guest-exec","arguments":{"path":"echo","arg":["hi"]}}', timeout: 3 }]);
  fail = libvirtError(86, 'Guest agent is not responding: QEMU guest agent is not connected');
  await assert.rejects(channel.command('guest-ping', undefined, 1000), (err: VmletError) => err instanceof AgentUnavailableError && err.code === Code.FAILED_PRECONDITION && /^no guest agent answers in container c1 \(.*not connected\)/.test(err.message));
  fail = libvirtError(1, "internal error: unable to execute QEMU agent command 'guest-exec': Failed to execute child process “nope” (No such file or directory)");
  await assert.rejects(channel.command('guest-exec', { path: 'nope' }, 1000), (err: unknown) => err instanceof GuestAgentError && err.desc === 'Failed to execute child process “nope” (No such file or directory)');
  fail = libvirtError(55, 'Requested operation is not valid: domain is not running');
  await assert.rejects(channel.command('guest-ping', undefined, 1000), (err: VmletError) => !(err instanceof AgentUnavailableError) && err.code === Code.FAILED_PRECONDITION && /not running/.test(err.message));
  present = false;
  await assert.rejects(channel.command('guest-ping', undefined, 1000), (err: VmletError) => err.code === Code.FAILED_PRECONDITION && /not running/.test(err.message));
});

test('waitReady: an agent that starts while the guest boots is waited for; the ping is asked again until it answers', async () => {
  const { channel, commands } = fakeAgent({ answersFrom: Date.now() + 600 });
  const agent = new GuestAgent(channel);
  const started = Date.now();
  await agent.waitReady(5000);
  const waited = Date.now() - started;
  assert.ok(waited >= 550 && waited < 2500, `waited ${waited} ms`);
  assert.ok(commands.length >= 3 && commands.every((c) => c === 'guest-ping'), commands.join(','));
  assert.equal((await agent.exec({ argv: ['sh', '-c', 'exit 3'] })).exitCode, 3);
});

test('waitReady: no agent within the bound is FAILED_PRECONDITION naming the wait; the VM not running ends it at once; abort ends it', async () => {
  const agent = new GuestAgent(fakeAgent({ answersFrom: Number.MAX_SAFE_INTEGER }).channel);
  let started = Date.now();
  await assert.rejects(agent.waitReady(700), (err: VmletError) => err instanceof AgentUnavailableError && err.code === Code.FAILED_PRECONDITION && /no guest agent answers .*\(waited 0\.7 s for it\)$/.test(err.message));
  const took = Date.now() - started;
  assert.ok(took >= 650 && took < 1500, `took ${took} ms`);

  let asked = 0;
  const stopped = new GuestAgent({
    command: async () => {
      asked++;
      throw new FailedPreconditionError('container c: the VM is not running, no guest agent to ask');
    },
  });
  started = Date.now();
  await assert.rejects(stopped.waitReady(5000), (err: VmletError) => err.code === Code.FAILED_PRECONDITION && /not running/.test(err.message));
  assert.equal(asked, 1);
  assert.ok(Date.now() - started < 500);

  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error('client went away')), 300);
  started = Date.now();
  await assert.rejects(agent.waitReady(10_000, controller.signal), /client went away/);
  assert.ok(Date.now() - started < 1500, `abort took ${Date.now() - started} ms`);
});
