import test from 'node:test';
import assert from 'node:assert/strict';
import { bindDhcpSocketInNetns, childExecArgv } from '../../../src/network/dhcp/bind_in_netns.js';
import { InvalidArgumentError } from '../../../src/errors.js';

test('the helper inherits loader flags but not test-runner, inspector, watch or eval flags', () => {
  assert.deepEqual(childExecArgv(['--import', 'tsx']), ['--import', 'tsx']);
  assert.deepEqual(
    childExecArgv([
      '--import=tsx', '--test', '--test-reporter', 'spec', '--test-reporter-destination=stdout', '--inspect-brk=9229',
      '--enable-source-maps', '--watch', '--inspect-port', '9230', '-e', 'code()', '--require', './hook.cjs', '--test-only',
    ]),
    ['--import=tsx', '--enable-source-maps', '--require', './hook.cjs'],
  );
});

test('bindDhcpSocketInNetns refuses relative, unnormalised and NUL-bearing paths before running anything', async () => {
  for (const path of ['', 'run/netns/x', '/run/netns/../x', '/run/netns/x/', '/run//netns/x', '/run/netns/x\0y']) {
    await assert.rejects(bindDhcpSocketInNetns(path), InvalidArgumentError, JSON.stringify(path));
  }
  await assert.rejects(bindDhcpSocketInNetns('/run/netns/x', { port: 0 }), InvalidArgumentError);
  await assert.rejects(bindDhcpSocketInNetns('/run/netns/x', { port: 70000 }), InvalidArgumentError);
});
