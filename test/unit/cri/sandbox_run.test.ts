import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sandboxSpecFromConfig } from '../../../src/cri/sandbox_run.js';
import { InvalidArgumentError } from '../../../src/errors.js';

const metadata = { name: 'create-PodSandbox-for-container-0f7b5b9e-4d3c-4b8a-9d0e-1a2b3c4d5e6f', uid: 'u1', namespace: 'ns', attempt: 0 };
const config = (hostname: string) => ({ metadata, hostname }) as Parameters<typeof sandboxSpecFromConfig>[0];

test('RunPodSandbox without a hostname stores one derived from the pod name', () => {
  assert.equal(sandboxSpecFromConfig(config(''), '').hostname, 'create-podsandbox-for-container-0f7b5b9e-4d3c-4b8a-9d0e-1a2b3c4');
});

test('a valid hostname the caller gave is kept as given', () => {
  assert.equal(sandboxSpecFromConfig(config('web-1.example'), '').hostname, 'web-1.example');
});

test('an invalid hostname the caller gave is refused with INVALID_ARGUMENT naming the field', () => {
  for (const bad of ['-bad', 'bad_name', 'x'.repeat(64), 'a..b']) {
    assert.throws(() => sandboxSpecFromConfig(config(bad), ''), (err: unknown) => err instanceof InvalidArgumentError && /^config\.hostname /.test(err.message), bad);
  }
});
