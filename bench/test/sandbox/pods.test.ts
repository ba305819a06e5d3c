import { test } from 'node:test';
import assert from 'node:assert/strict';
import { podIdentity, podSandboxConfig, stoppedSandboxRecord, GROUP_LABEL } from '../../sandbox/pods.js';
import { sandboxSpecFromConfig } from '../../../src/cri/sandbox_run.js';
import { sandboxKey } from '../../../src/sandbox/records.js';

test('the pod config passes vmlet\'s own RunPodSandbox validation', () => {
  const pod = podIdentity('abc123', 's', 4, '0b7c6a62-5a7e-4b43-9d59-3b1f1c0de001');
  const spec = sandboxSpecFromConfig(podSandboxConfig(pod, 'abc123', 4, '2025-01-01T00:00:00Z') as never, '');
  assert.equal(spec.metadata.name, 'bench-abc123-s-4');
  assert.equal(spec.labels[GROUP_LABEL], 'g4');
  assert.equal(spec.labels['bench.vmlet.io/run'], 'abc123');
  assert.deepEqual(spec.portMappings, [{ protocol: 'tcp', containerPort: 8080, hostPort: 0, hostIP: '' }]);
});

test('a stored record matches what serve would persist for the same pod', () => {
  const pod = podIdentity('abc123', 'list', 13, 'uid-13');
  const r = stoppedSandboxRecord('f'.repeat(64), pod, 'abc123', 13, 1_700_000_000_000_000_000n, '2025-01-01T00:00:00Z');
  assert.equal(r.key, sandboxKey(r.metadata));
  assert.equal(r.state, 'NOTREADY');
  assert.equal(r.podIps, undefined);
  assert.equal(r.pendingCleanup, undefined);
  assert.equal(r.createdAtNs, '1700000000000000000');
  assert.equal(r.labels[GROUP_LABEL], 'g3');
  const spec = sandboxSpecFromConfig(podSandboxConfig(pod, 'abc123', 13, '2025-01-01T00:00:00Z') as never, '');
  assert.deepEqual(
    { labels: r.labels, dns: r.dns, portMappings: r.portMappings, hostname: r.hostname, logDirectory: r.logDirectory },
    { labels: spec.labels, dns: spec.dns, portMappings: spec.portMappings, hostname: spec.hostname, logDirectory: spec.logDirectory },
  );
});
