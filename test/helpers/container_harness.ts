/**
 * A ContainerService over fakes only (libvirt, QMP, consoles, sandboxes, images, clock), in a
 * temp state dir the test removes, with one CallLog for the whole flow.
 */
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { DomainState } from '../../src/libvirt/client.js';
import { ContainerService, type ContainerSpec } from '../../src/container/service.js';
import type { BlockDeviceHost } from '../../src/container/context.js';
import { WarmPool, WARM_DOMAIN_PREFIX } from '../../src/container/warm/pool.js';
import { QMP_DIR, VM_DIR } from '../../src/container/layout.js';
import { ownerIdFor } from '../../src/store/owner.js';
import type { HostFacts } from '../../src/container/domain_spec_builder.js';
import { silentLogger } from '../../src/log.js';
import { CallLog } from './call_log.js';
import { FakeClock } from './fake_clock.js';
import { FakeDomainConnection, FakeQemuProcesses } from './fake_domain_ops.js';
import { FakeConsoles, FakeImages, FakeQmp, FakeSandboxes, idSource, readySandbox } from './fake_container_deps.js';

export const HOST: HostFacts = { domainType: 'qemu', emulator: '/usr/local/lib/vmlet/vmwrapper', defaultMemoryBytes: 256 * 1024 * 1024, defaultVcpus: 1 };
export const SANDBOX_ID = `5b${'0'.repeat(62)}`;

export function containerSpec(overrides: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    sandboxId: SANDBOX_ID,
    image: 'vmlet.test/busybox:latest',
    command: [],
    args: [],
    workingDir: '',
    envs: [{ key: 'GREETING', value: 'hello' }],
    labels: {},
    annotations: {},
    mounts: [],
    resources: {},
    name: 'vm',
    attempt: 0,
    logPath: '',
    ...overrides,
  };
}

export async function containerHarness(t: TestContext, opts: { warm?: boolean; destroyMarginMs?: number; watchQemu?: boolean; blockDevices?: (root: string) => BlockDeviceHost } = {}) {
  const root = mkdtempSync(join(tmpdir(), 'vmlet-container-unit-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const clock = new FakeClock();
  const log = new CallLog(clock);
  log.scrub(root, '<state>');
  const libvirt = new FakeDomainConnection(log, clock);
  const sandboxes = new FakeSandboxes(log);
  sandboxes.records.set(SANDBOX_ID, readySandbox(SANDBOX_ID));
  const consoles = new FakeConsoles(log);
  const qmp = new FakeQmp(log);
  // QEMU's RESUME event: libvirt shows a warm domain running once `cont` ran on its own socket.
  qmp.onCommand = (path, command) => {
    if (command !== 'cont') return;
    const d = [...libvirt.ops.domains.values()].find((x) => x.ref.name === `${WARM_DOMAIN_PREFIX}${basename(path).slice(0, 12)}`);
    if (d) d.state = DomainState.RUNNING;
  };
  const ids = idSource('c');
  let pool: WarmPool | undefined;
  const warmNetns = new Set<string>();
  if (opts.warm) {
    let n = 0;
    pool = new WarmPool({
      size: 1,
      client: () => libvirt.ops,
      netns: {
        create: async () => {
          const netnsName = `vmlet-warm-${(++n).toString().padStart(4, '0')}`;
          log.add(`netd createWarmNetns -> ${netnsName}`);
          warmNetns.add(netnsName);
          return { netnsName };
        },
        delete: async (name) => {
          log.add(`netd deleteWarmNetns ${name}`);
          warmNetns.delete(name);
        },
      },
      host: HOST,
      owner: ownerIdFor(root),
      dataDir: join(root, VM_DIR),
      qmpDir: join(root, QMP_DIR),
      logger: silentLogger,
      refillDelayMs: 3_600_000, // no refill inside a test's flow
      newId: ids.newId,
      newUuid: ids.newUuid,
    });
    t.after(() => pool!.close());
  }
  const service = new ContainerService(root, {
    libvirt,
    images: new FakeImages(),
    sandboxes,
    consoles,
    host: HOST,
    logger: silentLogger,
    pool,
    clock,
    qmp: qmp.connect,
    ...ids,
    ...(opts.destroyMarginMs !== undefined ? { destroyMarginMs: opts.destroyMarginMs } : {}),
    ...(opts.watchQemu ? { qemuProcesses: new FakeQemuProcesses(libvirt.ops, clock, log) } : {}),
    ...(opts.blockDevices ? { blockDevices: opts.blockDevices(root) } : {}),
  });
  await service.load();
  if (pool) {
    await pool.start();
    await until('a warm VM', () => log.includes('START_PAUSED'));
    await new Promise((r) => setTimeout(r, 20)); // the pool takes it in
  }
  return { root, clock, log, libvirt, ops: libvirt.ops, sandboxes, consoles, qmp, pool, warmNetns, service, owner: ownerIdFor(root) };
}

export async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.fail(`timed out waiting for ${what}`);
}
