/** The generated /etc/cloud/environment, sourced by a real POSIX shell, yields the exact values. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { environmentFile, type ContainerEnvVar } from '../../../src/guest/cloudinit.js';

const run = promisify(execFile);

test('sh sources the environment file to the original values', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vmlet-envfile-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const env: ContainerEnvVar[] = [
    { name: 'PLAIN', value: 'hello' },
    { name: 'QUOTES', value: `it's a "test"` },
    { name: 'EXPANSIONS', value: '$HOME $(touch pwned) `touch pwned2` ${X:-y} \\n' },
    { name: 'MULTILINE', value: 'line1\nline2\n' },
    { name: 'EMPTY', value: '' },
    { name: 'UNICODE', value: 'päivää ☃' },
    { name: 'SEMI', value: "'; touch pwned3; '" },
  ];
  const file = join(dir, 'environment');
  await writeFile(file, environmentFile(env).content);
  // dash is Debian's /bin/sh; env -0 prints NUL-separated so newlines survive.
  const { stdout } = await run('/bin/sh', ['-c', 'cd "$2" && set -a && . "$1" && env -0', 'sh', file, dir], {
    env: { PATH: '/usr/bin:/bin' },
  });
  const seen = new Map<string, string>();
  for (const entry of stdout.split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) seen.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  for (const { name, value } of env) assert.equal(seen.get(name), value, name);
  const { stdout: ls } = await run('ls', ['-A', dir]);
  assert.equal(ls.trim(), 'environment', 'sourcing ran no embedded command');
});
