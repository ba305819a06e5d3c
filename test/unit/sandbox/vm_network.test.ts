import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SandboxService } from '../../../src/sandbox/service.js';
import type { NetdClient } from '../../../src/netd/client.js';
import { FailedPreconditionError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';

/** A netd whose sandbox networks come up and whose VM sides always fail. */
function fakeNetd(): NetdClient {
  return {
    async call(method: string) {
      if (method === 'setup') {
        await new Promise((r) => setTimeout(r, 50)); // a build takes a while
        return { netnsPath: '/run/netns/vmlet-fake', podIps: ['198.18.9.2'] };
      }
      if (method === 'teardown') return {};
      if (method === 'vmNetwork') return { ready: false, message: 'wiring failed (fake)' };
      throw new Error(`unexpected ${method}`);
    },
  } as unknown as NetdClient;
}

const spec = (name: string) => ({
  metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
  hostname: name, logDirectory: '', runtimeHandler: '', labels: {}, annotations: {},
  dns: { servers: [], searches: [], options: [] }, portMappings: [],
});

/** A SandboxService over the fake netd, in a temp dir the test removes. */
async function serviceFor(t: TestContext): Promise<SandboxService> {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-sandbox-unit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sandboxes = new SandboxService(dir, fakeNetd(), silentLogger, 5000);
  await sandboxes.load();
  return sandboxes;
}

test('a failed VM side does not wait for the sandbox lock: a Stop waiting for the caller finishes (no deadlock)', async (t) => {
  const sandboxes = await serviceFor(t);
  const id = await sandboxes.run(spec('a'));
  // StartContainer holds its container's lock while it asks for the VM side; Stop holds the
  // sandbox lock and waits for that container. Here Stop's hook waits for the caller's answer.
  let answer!: Promise<unknown>;
  const asked = new Promise<void>((resolve) => {
    sandboxes.containerHooks = {
      stopContainersOf: async () => {
        answer = sandboxes.vmNetwork(id).catch((err: unknown) => err);
        resolve();
        await answer;
      },
      removeContainersOf: async () => {},
    };
  });
  const stopped = sandboxes.stop(id);
  await asked;
  const outcome = await Promise.race([answer, new Promise((r) => setTimeout(() => r('hung'), 2000))]);
  assert.ok(outcome instanceof FailedPreconditionError, `vmNetwork answered ${String(outcome)}`);
  assert.match((outcome as Error).message, /wiring failed \(fake\)/);
  await stopped;
  assert.equal(sandboxes.get(id)?.state, 'NOTREADY');
});

test('a failed VM side makes a READY sandbox NOTREADY with the reason', async (t) => {
  const sandboxes = await serviceFor(t);
  const id = await sandboxes.run(spec('b'));
  assert.equal(sandboxes.get(id)?.state, 'READY');
  await assert.rejects(sandboxes.vmNetwork(id), FailedPreconditionError);
  for (let i = 0; i < 100 && sandboxes.get(id)?.state === 'READY'; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(sandboxes.get(id)?.state, 'NOTREADY');
  assert.equal(sandboxes.get(id)?.notReadyReason, 'wiring failed (fake)');
  await sandboxes.flush();
});

test('a duplicate RunPodSandbox during the build gets the id only once the sandbox is READY', async (t) => {
  const sandboxes = await serviceFor(t);
  const first = sandboxes.run(spec('c'));
  // The build is under way: its NOTREADY record is stored, netd's setup not answered yet.
  while (sandboxes.list().length === 0) await new Promise((r) => setImmediate(r));
  assert.equal(sandboxes.list()[0]!.state, 'NOTREADY');
  const id = await sandboxes.run(spec('c'));
  assert.equal(sandboxes.get(id)?.state, 'READY');
  assert.equal(await first, id);
  await sandboxes.flush();
});
