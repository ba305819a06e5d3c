import test from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VmStreams } from '../../../src/container/vm_streams.js';
import { guestAgentSocketPath } from '../../../src/container/vm_sockets.js';
import { Code, VmletError } from '../../../src/errors.js';
import { createLogger } from '../../../src/log.js';
import type { ContainerRecord } from '../../../src/container/records.js';

const ID = 'c'.repeat(64);

async function withStreams(fn: (streams: VmStreams, qmpDir: string) => Promise<void>): Promise<void> {
  const qmpDir = await mkdtemp(join(tmpdir(), 'vmlet-vs-'));
  const streams = new VmStreams({
    qmpDir,
    container: (id) => ({ id: ID, state: id === ID ? 'RUNNING' : 'EXITED' }) as unknown as ContainerRecord,
    sandbox: () => ({ id: 's', ready: true }),
    tcpSocketInNetns: () => Promise.reject(new Error('unused')),
    logger: createLogger('silent'),
    agentSyncTimeoutMs: 300,
  });
  try {
    await fn(streams, qmpDir);
  } finally {
    streams.forget(ID);
    await rm(qmpDir, { recursive: true, force: true });
  }
}

// Found with crictl exec -it against the busybox guest: the session waited for the end of stdin
// (a terminal never ends it) before looking for the agent, so the client hung instead of failing.
test('exec with a stdin that never ends fails with FAILED_PRECONDITION when no agent answers, within the sync wait', { timeout: 10_000 }, async () => {
  await withStreams(async (streams, qmpDir) => {
    // The channel exists (QEMU listens) but nothing in the guest answers, as with the busybox guest.
    const silent = net.createServer((s) => s.on('error', () => {}));
    await new Promise<void>((r) => silent.listen(guestAgentSocketPath(qmpDir, ID), () => r()));
    const stdin = new PassThrough(); // never ended, like a terminal
    const started = Date.now();
    try {
      await assert.rejects(
        streams.exec(ID, ['sh'], { stdin, stdout: new PassThrough(), tty: true, signal: new AbortController().signal }),
        (err: unknown) => err instanceof VmletError && err.code === Code.FAILED_PRECONDITION && /no guest agent answers/.test(err.message),
      );
      assert.ok(Date.now() - started < 3000, `failed after ${Date.now() - started} ms`);
    } finally {
      silent.close();
    }
  });
});

test('exec in a VM without the agent channel at all fails with FAILED_PRECONDITION at once', async () => {
  await withStreams(async (streams) => {
    await assert.rejects(
      streams.exec(ID, ['true'], { stdin: new PassThrough(), tty: false, signal: new AbortController().signal }),
      (err: unknown) => err instanceof VmletError && err.code === Code.FAILED_PRECONDITION,
    );
  });
});
