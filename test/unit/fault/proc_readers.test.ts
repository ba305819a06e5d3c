import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { openFdCount, processTree, rssKiB } from '../../helpers/proc_readers.js';

test('the /proc readers see this process and its child, and answer undefined for a gone pid', async () => {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    assert.ok((openFdCount(process.pid) ?? 0) >= 3, 'stdin/stdout/stderr at least');
    assert.ok((rssKiB(process.pid) ?? 0) > 1024, 'a node process has more than 1 MiB resident');
    assert.ok(processTree(process.pid).includes(child.pid!));
  } finally {
    child.kill('SIGKILL');
    await once(child, 'exit');
  }
  assert.equal(openFdCount(child.pid!), undefined);
  assert.equal(rssKiB(child.pid!), undefined);
  assert.deepEqual(processTree(child.pid!), [child.pid!]);
});
