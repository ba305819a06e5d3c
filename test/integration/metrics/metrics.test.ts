/** `--metrics-address`: a real vmlet serve answers /metrics with RPC counts by method and code, pod and VM gauges, warm pool and netd counters. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { get } from 'node:http';
import { startTestDaemon, grpcCode } from '../../helpers/daemon.js';
import { serveBody, startImageServer } from '../../helpers/image_server.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';

function scrape(port: number, path = '/metrics'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

test('metrics: RPC counts and latency by method and code, pods by state, warm pool and netd counters', { timeout: 120_000 }, async () => {
  await ensureLibvirtd();
  const port = 20000 + Math.floor(Math.random() * 20000);
  const d = await startTestDaemon({ args: ['--metrics-address', `127.0.0.1:${port}`, '--kvm', 'off'] });
  const images = await startImageServer();
  try {
    // A 1 MiB raw disk pulled over http counts its bytes.
    images.route('/disk.raw', serveBody(Buffer.alloc(1024 * 1024)));
    await d.image.PullImage!({ image: { image: `${images.httpBase}/disk.raw` } });
    await d.runtime.Version!({});
    await d.runtime.Version!({});
    assert.equal(await grpcCode(d.runtime.PodSandboxStatus!({ pod_sandbox_id: 'f'.repeat(64) })), 5);
    const { status, body } = await scrape(port);
    assert.equal(status, 200);
    assert.match(body, /^vmlet_cri_requests_total\{method="Version",code="OK"\} 2$/m);
    assert.match(body, /^vmlet_cri_requests_total\{method="PodSandboxStatus",code="NOT_FOUND"\} 1$/m);
    assert.match(body, /^vmlet_cri_request_duration_seconds_count\{method="Version",code="OK"\} 2$/m);
    assert.match(body, /^vmlet_warm_pool_size 0$/m);
    assert.match(body, /^vmlet_warm_pool_max 0$/m);
    assert.match(body, /^vmlet_warm_pool_target 0$/m);
    assert.match(body, /^vmlet_netd_restarts_total 0$/m);
    assert.match(body, /^vmlet_image_pulled_bytes_total 1048576$/m);
    assert.match(body, /^# TYPE vmlet_pods gauge$/m);
    assert.equal((await scrape(port, '/other')).status, 404);
  } finally {
    await images.close();
    await d.cleanup();
  }
  // The endpoint goes with the daemon.
  await assert.rejects(scrape(port));
});
