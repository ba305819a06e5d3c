import test from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { VmStreams } from '../../../src/container/vm_streams.js';
import { Code, FailedPreconditionError, VmletError } from '../../../src/errors.js';
import { createLogger } from '../../../src/log.js';
import type { AgentChannel } from '../../../src/qmp/guest_agent.js';
import type { ContainerRecord } from '../../../src/container/records.js';

const ID = 'c'.repeat(64);

function streamsWith(channel: AgentChannel): VmStreams {
  return new VmStreams({
    qmpDir: '/nonexistent',
    container: (id) => ({ id: ID, state: id === ID ? 'RUNNING' : 'EXITED' }) as unknown as ContainerRecord,
    sandbox: () => ({ id: 's', ready: true }),
    tcpSocketInNetns: () => Promise.reject(new Error('unused')),
    agentChannel: () => channel,
    logger: createLogger('silent'),
  });
}

/** An agent channel with no agent behind it: libvirt's answer after its bounded guest-sync wait. */
const silent: AgentChannel = {
  command: () => new Promise((_, reject) => setTimeout(() => reject(new FailedPreconditionError('no guest agent answers in container c (Guest agent is not responding)')), 200)),
};

// Found with crictl exec -it against the busybox guest: the session waited for the end of stdin
// (a terminal never ends it) before looking for the agent, so the client hung instead of failing.
test('exec with a stdin that never ends fails with FAILED_PRECONDITION when no agent answers, without waiting for stdin', { timeout: 10_000 }, async () => {
  const streams = streamsWith(silent);
  const stdin = new PassThrough(); // never ended, like a terminal
  const started = Date.now();
  await assert.rejects(
    streams.exec(ID, ['sh'], { stdin, stdout: new PassThrough(), tty: true, signal: new AbortController().signal }),
    (err: unknown) => err instanceof VmletError && err.code === Code.FAILED_PRECONDITION && /no guest agent answers/.test(err.message),
  );
  assert.ok(Date.now() - started < 3000, `failed after ${Date.now() - started} ms`);
});

test('exec and execSync of a container that is not running are FAILED_PRECONDITION before the agent is asked', async () => {
  let asked = 0;
  const streams = streamsWith({ command: async () => void asked++ });
  await assert.rejects(streams.execSync('other', ['true'], 0), (err: VmletError) => err.code === Code.FAILED_PRECONDITION);
  await assert.rejects(streams.exec('other', ['true'], { tty: false, signal: new AbortController().signal }), (err: VmletError) => err.code === Code.FAILED_PRECONDITION);
  assert.equal(asked, 0);
});
