/**
 * vmlet's Prometheus metrics (prom-client) and the `/metrics` HTTP endpoint
 * (`--metrics-address HOST:PORT`, off by default). RPC counts and latencies are observed as calls
 * finish (src/cri/rpc.ts); everything else is read from the live objects when scraped, so no
 * second copy of the state can drift.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RpcObserver } from '../cri/rpc.js';
import type { Logger } from '../log.js';

/** What the scrape-time gauges read. */
export interface MetricsSources {
  sandboxStates(): Record<string, number>;
  containerStates(): Record<string, number>;
  warmPool(): { configured: number; max: number; target: number; idle: number; claimsTotal: number };
  netdRestartsTotal(): number;
  /** Bytes downloaded by image pulls since start. */
  imageBytesPulledTotal(): number;
}

export class VmletMetrics {
  readonly registry = new Registry();
  readonly observeRpc: RpcObserver;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    const requests = new Counter({ name: 'vmlet_cri_requests_total', help: 'CRI calls answered, by method and gRPC code', labelNames: ['method', 'code'], registers });
    const latency = new Histogram({
      name: 'vmlet_cri_request_duration_seconds', help: 'CRI call latency, by method and gRPC code', labelNames: ['method', 'code'], registers,
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
    });
    this.observeRpc = (method, code, seconds) => {
      requests.inc({ method, code });
      latency.observe({ method, code }, seconds);
    };
    const byState = (g: Gauge<string>, counts: Record<string, number>) => {
      g.reset();
      for (const [state, n] of Object.entries(counts)) g.set({ state }, n);
    };
    new Gauge({ name: 'vmlet_pods', help: 'Pod sandboxes vmlet runs, by state', labelNames: ['state'], registers, collect() { byState(this, sources.sandboxStates()); } });
    new Gauge({ name: 'vmlet_vms', help: 'Container VMs vmlet runs, by state', labelNames: ['state'], registers, collect() { byState(this, sources.containerStates()); } });
    new Gauge({ name: 'vmlet_warm_pool_size', help: 'Warm VMs configured (the floor, --vm-warm-pool)', registers, collect() { this.set(sources.warmPool().configured); } });
    new Gauge({ name: 'vmlet_warm_pool_max', help: 'Most warm VMs demand may ask for (--vm-warm-pool-max)', registers, collect() { this.set(sources.warmPool().max); } });
    new Gauge({ name: 'vmlet_warm_pool_target', help: 'Idle warm VMs the pool aims at now (the floor plus the claims of the last minute, at most the ceiling)', registers, collect() { this.set(sources.warmPool().target); } });
    new Gauge({ name: 'vmlet_warm_pool_idle', help: 'Warm VMs ready to be claimed', registers, collect() { this.set(sources.warmPool().idle); } });
    new Gauge({ name: 'vmlet_warm_pool_claims_total', help: 'Warm VMs claimed by new pods since start', registers, collect() { this.set(sources.warmPool().claimsTotal); } });
    new Gauge({ name: 'vmlet_image_pulled_bytes_total', help: 'Bytes downloaded by image pulls (http and registry) since start', registers, collect() { this.set(sources.imageBytesPulledTotal()); } });
    new Gauge({ name: 'vmlet_netd_restarts_total', help: 'Restarts of the netd process since start', registers, collect() { this.set(sources.netdRestartsTotal()); } });
    collectDefaultMetrics({ register: this.registry, prefix: 'vmlet_' });
  }
}

/** Serves GET /metrics on host:port; resolves once listening. */
export async function serveMetrics(address: { host: string; port: number }, metrics: VmletMetrics, logger: Logger): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (err: unknown) => {
        logger.error({ err }, 'metrics collection failed');
        res.writeHead(500).end();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  logger.info({ address: `${address.host}:${address.port}` }, 'metrics listening');
  return server;
}

/** `HOST:PORT` or `[v6]:PORT`. */
export function parseMetricsAddress(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text);
  if (!m || Number(m[3]) > 65535) throw new Error(`${JSON.stringify(text)} is not HOST:PORT`);
  return { host: m[1] ?? m[2]!, port: Number(m[3]) };
}
