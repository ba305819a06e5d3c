import test from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { VmStreams } from '../../../src/container/vm_streams.js';
import { Code, FailedPreconditionError, VmletError } from '../../../src/errors.js';
import { createLogger } from '../../../src/log.js';
import { AgentUnavailableError, type AgentChannel } from '../../../src/qmp/guest_agent.js';
import type { ContainerRecord } from '../../../src/container/records.js';

const ID = 'c'.repeat(64);

const AGENT_WAIT_MS = 1000;

function streamsWith(channel: AgentChannel): VmStreams {
  return new VmStreams({
    qmpDir: '/nonexistent',
    container: (id) => ({ id: ID, state: id === ID ? 'RUNNING' : 'EXITED' }) as unknown as ContainerRecord,
    sandbox: () => ({ id: 's', ready: true }),
    tcpSocketInNetns: () => Promise.reject(new Error('unused')),
    agentChannel: () => channel,
    agentWaitMs: AGENT_WAIT_MS,
    logger: createLogger('silent'),
  });
}

/** An agent channel with no agent behind it: libvirt's answer after its bounded guest-sync wait. */
const silent: AgentChannel = {
  command: () => new Promise((_, reject) => setTimeout(() => reject(new AgentUnavailableError('no guest agent answers in container c (Guest agent is not responding)')), 200)),
};

/**
 * A guest whose agent starts at `from` (libvirt: "not connected" until then); `sleep` runs until
 * killed, everything else exits 0 at once printing its argv.
 */
function bootingAgent(from: number) {
  const log: string[] = [];
  const running = new Set<number>();
  let next = 1;
  const channel: AgentChannel = {
    async command(execute, args) {
      log.push(execute);
      if (Date.now() < from) throw new AgentUnavailableError('no guest agent answers in container c (QEMU guest agent is not connected)');
      const a = (args ?? {}) as { path?: string; arg?: string[]; pid?: number };
      if (execute === 'guest-ping') return {};
      if (execute === 'guest-exec') {
        const pid = next++;
        if (a.path === 'sleep') running.add(pid);
        if (a.path === 'kill') running.delete(Number(a.arg![1]));
        return { pid };
      }
      if (execute === 'guest-exec-status') {
        if (running.has(a.pid!)) return { exited: false };
        return { exited: true, exitcode: 0, 'out-data': Buffer.from('ran').toString('base64') };
      }
      throw new Error(`unexpected ${execute}`);
    },
  };
  return { channel, log, running };
}

// Found with crictl exec -it against the busybox guest: the session waited for the end of stdin
// (a terminal never ends it) before looking for the agent, so the client hung instead of failing.
test('exec with a stdin that never ends fails with FAILED_PRECONDITION when no agent answers within the bound, without waiting for stdin', { timeout: 10_000 }, async () => {
  const streams = streamsWith(silent);
  const stdin = new PassThrough(); // never ended, like a terminal
  const started = Date.now();
  await assert.rejects(
    streams.exec(ID, ['sh'], { stdin, stdout: new PassThrough(), tty: true, signal: new AbortController().signal }),
    (err: unknown) => err instanceof VmletError && err.code === Code.FAILED_PRECONDITION && /no guest agent answers.*waited 1 s/.test(err.message),
  );
  const took = Date.now() - started;
  assert.ok(took >= AGENT_WAIT_MS - 50 && took < 3000, `failed after ${took} ms`);
});

// critest execs right after StartContainer, before the guest has started its agent.
test('exec and execSync right after start wait for the agent that the booting guest starts', { timeout: 10_000 }, async () => {
  const { channel } = bootingAgent(Date.now() + 500);
  const streams = streamsWith(channel);
  const sync = await streams.execSync(ID, ['echo', 'hi'], 0);
  assert.equal(sync.stdout.toString(), 'ran');
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const fresh = streamsWith(bootingAgent(Date.now() + 500).channel);
  assert.deepEqual(await fresh.exec(ID, ['echo', 'hi'], { stdout: out, tty: false, signal: new AbortController().signal }), { exitCode: 0 });
  assert.equal(Buffer.concat(chunks).toString(), 'ran');
});

test("execSync's timeout bounds the whole call: the wait for the agent, then the command (killed in the guest)", { timeout: 10_000 }, async () => {
  // No agent within the timeout: FAILED_PRECONDITION after the timeout, not after the default wait.
  let started = Date.now();
  await assert.rejects(streamsWith(silent).execSync(ID, ['true'], 400), (err: VmletError) => err.code === Code.FAILED_PRECONDITION && /waited 0\.4 s/.test(err.message));
  assert.ok(Date.now() - started < AGENT_WAIT_MS, `took ${Date.now() - started} ms`);
  // The agent comes up after 500 ms of a 1500 ms timeout: sleep gets the rest, then is killed.
  const booting = bootingAgent(Date.now() + 500);
  started = Date.now();
  await assert.rejects(streamsWith(booting.channel).execSync(ID, ['sleep', '4321'], 1500), (err: VmletError) => err.code === Code.DEADLINE_EXCEEDED);
  const took = Date.now() - started;
  assert.ok(took >= 1400 && took < 2500, `took ${took} ms`);
  assert.equal(booting.running.size, 0, 'the sleep was killed');
  assert.ok(booting.log.includes('guest-exec'));
});

test('exec and execSync of a container that is not running are FAILED_PRECONDITION before the agent is asked', async () => {
  let asked = 0;
  const streams = streamsWith({ command: async () => void asked++ });
  await assert.rejects(streams.execSync('other', ['true'], 0), (err: VmletError) => err.code === Code.FAILED_PRECONDITION);
  await assert.rejects(streams.exec('other', ['true'], { tty: false, signal: new AbortController().signal }), (err: VmletError) => err.code === Code.FAILED_PRECONDITION);
  assert.equal(asked, 0);
});
