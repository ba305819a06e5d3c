import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RUN_LABEL } from '../../lib/pods.js';
import { CONTAINER_LOG_PATH, kubeletMounts, vmCreateContainerRequest, vmPodName, vmPodSandboxConfig } from '../../vm/pods.js';

test('the pod config carries the run label, the log directory and a hostname that is the pod name', () => {
  const name = vmPodName('abc123', 'm', 2);
  assert.equal(name, 'vmbench-abc123-m2');
  const c = vmPodSandboxConfig({ name, uid: 'u-1', logDirectory: '/tmp/x/logs' }, 'abc123', '2026-01-01T00:00:00Z') as any;
  assert.equal(c.metadata.name, name);
  assert.equal(c.hostname, name);
  assert.equal(c.log_directory, '/tmp/x/logs');
  assert.equal(c.labels[RUN_LABEL], 'abc123');
  assert.match(c.hostname, /^[a-z0-9-]{1,63}$/);
});

test('the container request asks for the image by URL, the memory limit in bytes and kubelet\'s log path', () => {
  const pod = vmPodSandboxConfig({ name: 'p', uid: 'u', logDirectory: '/l' }, 't', 'now');
  const r = vmCreateContainerRequest('sb', pod, 'http://127.0.0.1:1/g.qcow2', 256) as any;
  assert.equal(r.pod_sandbox_id, 'sb');
  assert.equal(r.config.image.image, 'http://127.0.0.1:1/g.qcow2');
  assert.equal(r.config.linux.resources.memory_limit_in_bytes, String(256 * 1024 * 1024));
  assert.equal(r.config.log_path, CONTAINER_LOG_PATH);
  assert.equal(r.sandbox_config, pod);
});

test('kubelet\'s two usual mounts: /etc/hosts writable, the token volume read-only; no mounts field without mounts', () => {
  const pod = vmPodSandboxConfig({ name: 'p', uid: 'u', logDirectory: '/l' }, 't', 'now');
  assert.equal('mounts' in ((vmCreateContainerRequest('sb', pod, 'u', 256) as any).config), false);
  const mounts = kubeletMounts('/k/etc-hosts', '/k/token');
  const r = vmCreateContainerRequest('sb', pod, 'u', 256, mounts) as any;
  assert.deepEqual(r.config.mounts, [
    { container_path: '/etc/hosts', host_path: '/k/etc-hosts', readonly: false },
    { container_path: '/var/run/secrets/kubernetes.io/serviceaccount', host_path: '/k/token', readonly: true },
  ]);
});
