import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runTool, ToolFailedError } from '../../../src/network/iproute.js';
import { DeadlineExceededError, UnavailableError } from '../../../src/errors.js';

test('runTool passes stdin, and reports exit status and stderr', async () => {
  const out = await runTool('cat', [], { stdin: 'hello\n', timeoutMs: 5000 });
  assert.equal(out.stdout, 'hello\n');
  await assert.rejects(
    runTool('sh', ['-c', 'echo oops >&2; exit 3'], { timeoutMs: 5000 }),
    (err: unknown) => err instanceof ToolFailedError && err.exitCode === 3 && err.stderr === 'oops\n' && /oops/.test(err.message),
  );
});

test('runTool kills a process past its timeout and names a missing executable', async () => {
  const started = Date.now();
  await assert.rejects(runTool('sleep', ['5'], { timeoutMs: 100 }), DeadlineExceededError);
  assert.ok(Date.now() - started < 2000);
  await assert.rejects(runTool('/nonexistent/ip', [], { timeoutMs: 1000 }), UnavailableError);
});
