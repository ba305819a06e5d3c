import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bindDhcpSocketInNetns } from '../../../../src/network/dhcp/bind_in_netns.js';
import { NATIVE_HELPER_PATH } from '../../../../src/native/netns.js';
import { InvalidArgumentError } from '../../../../src/errors.js';

test('the native helper path is the same from src/ and from the tsc build in dist/', () => {
  const repoRoot = join(import.meta.dirname, '..', '..', '..', '..');
  assert.equal(NATIVE_HELPER_PATH, join(repoRoot, 'native', 'build', 'vmlet_netns.node'));
  // src/native/netns.ts finds the helper by a path relative to itself: dist/ must mirror src/ one level below the root.
  const tsconfig = JSON.parse(readFileSync(join(repoRoot, 'tsconfig.json'), 'utf8'));
  assert.deepEqual([tsconfig.compilerOptions.rootDir, tsconfig.compilerOptions.outDir], ['src', 'dist']);
});

test('bindDhcpSocketInNetns refuses relative, unnormalised and NUL-bearing paths before running anything', async () => {
  for (const path of ['', 'run/netns/x', '/run/netns/../x', '/run/netns/x/', '/run//netns/x', '/run/netns/x\0y']) {
    await assert.rejects(bindDhcpSocketInNetns(path), InvalidArgumentError, JSON.stringify(path));
  }
  await assert.rejects(bindDhcpSocketInNetns('/run/netns/x', { port: 0 }), InvalidArgumentError);
  await assert.rejects(bindDhcpSocketInNetns('/run/netns/x', { port: 70000 }), InvalidArgumentError);
});
