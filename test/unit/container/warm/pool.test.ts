/**
 * The warm pool's bookkeeping (claim, adopt, release, refill, close) against fake libvirt and
 * netd calls, and the pure rules for which containers a warm VM fits. The real thing (a warm VM
 * adopted, booted, restarted around and removed) is test/integration/e2e/vm_pod.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WarmPool, WARM_MAX_NICS, type WarmVm } from '../../../../src/container/warm/pool.js';
import { warmFits, warmTapNics } from '../../../../src/container/warm/fit.js';
import { parseVmAnnotations } from '../../../../src/guest/annotations.js';
import type { LibvirtClient, DomainRef } from '../../../../src/libvirt/client.js';
import type { HostFacts } from '../../../../src/container/domain_spec_builder.js';
import type { VmInterface, VmNetwork } from '../../../../src/network/types.js';
import { silentLogger } from '../../../../src/log.js';

const MIB = 1024 * 1024;
const host: HostFacts = { domainType: 'qemu', emulator: '/usr/local/lib/vmlet/vmwrapper', defaultMemoryBytes: 256 * MIB, defaultVcpus: 1 };

/** Just the libvirt calls the pool makes, keeping which domains exist and run. */
class FakeLibvirt {
  defined = new Map<string, string>();
  running = new Set<string>();
  failCreate = false;
  /** When set, create() waits for it: a warm VM caught in the middle of being made. */
  gate: Promise<void> | undefined;
  async defineXml(xml: string): Promise<DomainRef> {
    const name = /<name>([^<]+)<\/name>/.exec(xml)![1]!;
    const uuid = /<uuid>([^<]+)<\/uuid>/.exec(xml)![1]!;
    this.defined.set(name, xml);
    return { name, uuid, id: -1 };
  }
  /** create() calls in progress now, and the most at once. */
  starting = 0;
  mostStartingAtOnce = 0;
  async create(dom: DomainRef, flags: number): Promise<DomainRef> {
    assert.equal(flags, 1, 'warm VMs start paused');
    if (this.failCreate) throw new Error('QEMU would not start');
    this.starting++;
    this.mostStartingAtOnce = Math.max(this.mostStartingAtOnce, this.starting);
    try {
      await this.gate;
    } finally {
      this.starting--;
    }
    this.running.add(dom.name);
    return { ...dom, id: 7 };
  }
  async destroy(dom: DomainRef): Promise<void> {
    this.running.delete(dom.name);
  }
  async undefine(dom: DomainRef): Promise<void> {
    this.defined.delete(dom.name);
  }
}

class FakeNetns {
  live = new Set<string>();
  n = 0;
  async create() {
    const netnsName = `vmlet-warm-${(++this.n).toString(16).padStart(16, '0')}`;
    this.live.add(netnsName);
    return { netnsName };
  }
  async delete(name: string) {
    this.live.delete(name);
  }
}

function makePool(size: number, sizing: { max?: number; fillParallel?: number; demandWindowMs?: number } = {}) {
  const root = mkdtempSync(join(tmpdir(), 'vmlet-warm-'));
  const dataDir = join(root, 'vms');
  mkdirSync(dataDir);
  const libvirt = new FakeLibvirt();
  const netns = new FakeNetns();
  const pool = new WarmPool({
    size,
    client: () => libvirt as unknown as LibvirtClient,
    netns,
    host,
    owner: 'a1b2c3d4e5f60718',
    dataDir,
    qmpDir: join(root, 'qmp'),
    logger: silentLogger,
    refillDelayMs: 0,
    ...sizing,
  });
  return { pool, libvirt, netns, dataDir, root };
}

async function until(what: string, check: () => boolean, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('the pool fills to its size, hands out a netns per claim, refills, and close() leaves nothing', async (t) => {
  const { pool, libvirt, netns, dataDir, root } = makePool(2);
  t.after(() => rmSync(root, { recursive: true, force: true }));
  await pool.start();
  await until('two warm VMs', () => libvirt.running.size === 2);
  const first = pool.claim('sandbox1');
  assert.ok(first && netns.live.has(first));
  const vm = pool.adopt('sandbox1')!;
  assert.equal(vm.netnsName, first);
  assert.ok(!pool.owns(vm.id), 'an adopted VM is the container’s, not the pool’s');
  assert.equal(pool.adopt('sandbox1'), undefined, 'adopted once');
  await until('the refill', () => libvirt.running.size === 3);
  assert.equal(readdirSync(dataDir).length, 3);

  await pool.discard(vm);
  assert.ok(!libvirt.defined.has(vm.domainName));
  assert.ok(readdirSync(dataDir).includes(vm.id), 'discard leaves the directory to the container');
  rmSync(join(dataDir, vm.id), { recursive: true });

  await pool.close();
  assert.equal(libvirt.defined.size, 0);
  assert.equal(libvirt.running.size, 0);
  assert.deepEqual(readdirSync(dataDir), []);
  // The adopted VM's netns belongs to its sandbox (netd deletes it at teardown); the idle ones went.
  assert.deepEqual([...netns.live], [first]);
  assert.equal(pool.claim('sandbox2'), undefined, 'a closed pool hands out nothing');
});

test('a released claim takes its domain and directory with it but leaves the netns to the sandbox', async (t) => {
  const { pool, libvirt, netns, dataDir, root } = makePool(1);
  t.after(() => rmSync(root, { recursive: true, force: true }));
  await pool.start();
  await until('a warm VM', () => libvirt.running.size === 1);
  const ns = pool.claim('s1')!;
  const [id] = readdirSync(dataDir);
  assert.ok(pool.owns(id!), 'a claimed VM is still the pool’s');
  await pool.release('s1');
  assert.ok(!pool.owns(id!));
  assert.ok(!readdirSync(dataDir).includes(id!));
  assert.ok(netns.live.has(ns));
  await pool.release('s1'); // idempotent
  await pool.close();
  assert.equal(libvirt.defined.size, 0);
});

test('an unused claimed VM goes back to the pool with its netns (no destroy); held, it cannot be adopted', async (t) => {
  const { pool, libvirt, netns, dataDir, root } = makePool(1);
  t.after(() => rmSync(root, { recursive: true, force: true }));
  await pool.start();
  await until('a warm VM', () => libvirt.running.size === 1);
  const ns = pool.claim('s1')!;
  const [id] = readdirSync(dataDir);
  assert.equal(pool.holdForReturn('s1'), true);
  assert.equal(pool.adopt('s1'), undefined, 'a held VM is not adopted by a late CreateContainer');
  assert.equal(pool.holdForReturn('s1'), false, 'held once');
  await pool.release('s1'); // StopPodSandbox stopping the sandbox's containers: not the held VM's business
  assert.equal(libvirt.running.size, 1, 'release() leaves a held VM alone');
  await pool.finishReturn('s1', true);
  assert.ok(pool.owns(id!));
  assert.deepEqual([...libvirt.running].length, 1, 'the VM still runs (paused): nothing destroyed');
  // The refill the claim scheduled finds the pool full again: no second VM.
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(libvirt.defined.size, 1);
  assert.equal(pool.claim('s2'), ns, 'the next sandbox gets the returned VM and its netns');
  await pool.release('s2');
  await pool.close();
  assert.equal(libvirt.defined.size, 0);
  assert.equal(netns.live.has(ns), true, 'the claimed netns is the sandbox’s to delete');
});

test('a returned VM whose netns could not be made warm again is destroyed; surplus returns are trimmed', async (t) => {
  const { pool, libvirt, netns, dataDir, root } = makePool(1);
  t.after(() => rmSync(root, { recursive: true, force: true }));
  await pool.start();
  await until('a warm VM', () => libvirt.running.size === 1);
  const [claimedId] = readdirSync(dataDir);
  const ns1 = pool.claim('s1')!;
  await until('the refill', () => libvirt.running.size === 2);
  assert.ok(pool.holdForReturn('s1'));
  await pool.finishReturn('s1', false);
  assert.ok(!readdirSync(dataDir).includes(claimedId!), 'destroyed with its directory');
  assert.ok(!pool.owns(claimedId!));
  assert.equal(libvirt.running.size, 1);

  // A return to a pool that is full already: one of the two idle VMs is discarded, netns included.
  const ns2 = pool.claim('s2')!;
  await until('the refill', () => libvirt.running.size === 2);
  assert.ok(pool.holdForReturn('s2'));
  await pool.finishReturn('s2', true);
  await until('the surplus trimmed', () => libvirt.running.size === 1 && libvirt.defined.size === 1);
  assert.equal(pool.claim('s3'), ns2, 'the returned (older) VM is handed out first');
  await pool.release('s3');
  await pool.close();
  assert.equal(libvirt.defined.size, 0);
  // Claimed netns are the sandboxes' to delete (netd's teardown); the pool deleted the trimmed VM's.
  assert.deepEqual([...netns.live].sort(), [ns1, ns2].sort());
});

test('a VM returned while a refill is making another one leaves the pool at its size, not above', async (t) => {
  const { pool, libvirt, root } = makePool(1);
  t.after(() => rmSync(root, { recursive: true, force: true }));
  await pool.start();
  await until('a warm VM', () => libvirt.running.size === 1);
  let open!: () => void;
  libvirt.gate = new Promise<void>((resolve) => (open = resolve));
  pool.claim('s1');
  await until('the refill to be defining its VM', () => libvirt.defined.size === 2);
  assert.ok(pool.holdForReturn('s1'));
  await pool.finishReturn('s1', true);
  open();
  await until('the refill done and the surplus trimmed', () => libvirt.running.size === 1 && libvirt.defined.size === 1);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(libvirt.defined.size, 1, 'one idle VM for a pool of one');
  await pool.close();
  assert.equal(libvirt.defined.size, 0);
});

test('a warm VM that cannot start is undone: no domain, directory or netns left', async (t) => {
  const { pool, libvirt, netns, dataDir, root } = makePool(1);
  t.after(() => rmSync(root, { recursive: true, force: true }));
  libvirt.failCreate = true;
  await pool.start();
  // Every undo has run once the directory is gone too (it is removed after the netns).
  await until('the attempt and its undo', () => netns.n === 1 && readdirSync(dataDir).length === 0);
  assert.equal(netns.live.size, 0);
  assert.equal(libvirt.defined.size, 0);
  assert.equal(libvirt.running.size, 0);
  assert.equal(pool.claim('s1'), undefined);
  await pool.close();
});

test('demand raises the target from the floor up to the ceiling; parallel refills; a quiet window trims back to the floor', async (t) => {
  const { pool, libvirt, netns, dataDir, root } = makePool(1, { max: 3, fillParallel: 2, demandWindowMs: 1000 });
  t.after(() => rmSync(root, { recursive: true, force: true }));
  await pool.start();
  await until('the floor', () => libvirt.running.size === 1);
  assert.equal(pool.target, 1);
  // Hold the refill's VMs in create() so the parallel ones can be seen at once.
  let open!: () => void;
  libvirt.gate = new Promise<void>((resolve) => (open = resolve));
  const ns1 = pool.claim('s1')!;
  assert.equal(pool.target, 2, 'one claim: floor + 1');
  await until('two VMs being made at once', () => libvirt.starting === 2);
  assert.equal(pool.claim('s2'), undefined, 'nothing idle while the refill runs');
  assert.equal(pool.target, 3, 'a claim that found nothing idle is demand too');
  assert.equal(pool.claim('s3'), undefined);
  assert.equal(pool.target, 3, 'capped at the ceiling');
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(libvirt.starting, 2, 'never more than --vm-warm-fill-parallel starts at once');
  open();
  await until('the refill to the ceiling', () => pool.idleCount === 3);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(libvirt.running.size, 4, '1 claimed + 3 idle: never above the ceiling');
  assert.equal(libvirt.mostStartingAtOnce, 2);
  const ns2 = pool.claim('s2')!;
  const ns3 = pool.claim('s3')!;
  for (const id of ['s1', 's2', 's3']) await pool.release(id);

  // No claims for a window: the target falls back to the floor and the surplus idle VMs go, netns included.
  await until('the decay to the floor', () => pool.target === 1 && libvirt.running.size === 1 && libvirt.defined.size === 1 && netns.live.size === 4, 600);
  assert.equal(readdirSync(dataDir).length, 1);
  // Three claimed netns (the sandboxes’ to delete) and the one idle VM’s.
  for (const ns of [ns1, ns2, ns3]) assert.ok(netns.live.has(ns));
  await pool.close();
  assert.equal(libvirt.defined.size, 0);
});

test('with a ceiling, a claim that finds nothing idle starts the refill at once instead of after the quiet time', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'vmlet-warm-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'vms'));
  const libvirt = new FakeLibvirt();
  const pool = new WarmPool({
    size: 1, max: 3, fillParallel: 2, client: () => libvirt as unknown as LibvirtClient, netns: new FakeNetns(), host, owner: 'a1b2c3d4e5f60718',
    dataDir: join(root, 'vms'), qmpDir: join(root, 'qmp'), logger: silentLogger, refillDelayMs: 60_000,
  });
  await pool.start();
  await until('a warm VM', () => libvirt.running.size === 1);
  pool.claim('s1');
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(libvirt.running.size, 1, 'a served claim waits out the quiet time');
  let open!: () => void;
  libvirt.gate = new Promise<void>((resolve) => (open = resolve));
  assert.equal(pool.claim('s2'), undefined);
  await until('the refill started by the miss, two at once', () => libvirt.starting === 2);
  open();
  await until('the refill to the ceiling', () => pool.idleCount === 3);
  assert.equal(libvirt.mostStartingAtOnce, 2);
  await pool.release('s1');
  await pool.close();
  assert.equal(libvirt.defined.size, 0);
});

test('a fixed-size pool (no ceiling set) ignores demand: the target stays at the floor', async (t) => {
  const { pool, libvirt, root } = makePool(1, { demandWindowMs: 10_000 });
  t.after(() => rmSync(root, { recursive: true, force: true }));
  await pool.start();
  await until('a warm VM', () => libvirt.running.size === 1);
  pool.claim('s1');
  assert.equal(pool.max, 1);
  assert.equal(pool.target, 1);
  await until('the refill', () => pool.idleCount === 1);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(libvirt.mostStartingAtOnce, 1);
  assert.equal(libvirt.running.size, 2);
  await pool.release('s1');
  await pool.close();
  assert.equal(libvirt.defined.size, 0);
});

test('close() during a parallel fill waits for every VM being made and leaves nothing', async (t) => {
  const { pool, libvirt, netns, dataDir, root } = makePool(3, { max: 4, fillParallel: 3 });
  t.after(() => rmSync(root, { recursive: true, force: true }));
  let open!: () => void;
  libvirt.gate = new Promise<void>((resolve) => (open = resolve));
  await pool.start();
  await until('three VMs being made at once', () => libvirt.starting === 3);
  const closing = pool.close();
  let closed = false;
  void closing.then(() => (closed = true));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(closed, false, 'close() waits for the fills');
  open();
  await closing;
  assert.equal(libvirt.defined.size, 0);
  assert.equal(libvirt.running.size, 0);
  assert.equal(netns.live.size, 0);
  assert.deepEqual(readdirSync(dataDir), []);
  assert.equal(pool.claim('s1'), undefined);
});

const vm: WarmVm = {
  id: 'x'.repeat(64), domainName: 'vmlet-warm-x', uuid: '53008994-44c0-4017-ad44-9c49758083da', dom: { name: 'vmlet-warm-x', uuid: '53008994-44c0-4017-ad44-9c49758083da', id: 3 },
  dir: '/x', netnsName: 'vmlet-warm-0000000000000001', memoryBytes: 256 * MIB, vcpus: 1, domainType: 'qemu', ports: 5, qmpPath: '/q/xxxxxxxxxxxxxxxx',
};

test('a warm VM fits containers of its shape; cputune is applied live, a system UUID or another size is not', () => {
  const plain = parseVmAnnotations({});
  assert.equal(warmFits(vm, {}, plain, false, host), true);
  assert.equal(warmFits(vm, { memoryLimitInBytes: String(256 * MIB) }, plain, false, host), true);
  assert.equal(warmFits(vm, { cpuShares: '512', cpuPeriod: '100000', cpuQuota: '100000' }, plain, false, host), true);
  assert.equal(warmFits(vm, { memoryLimitInBytes: String(512 * MIB) }, plain, false, host), false);
  assert.equal(warmFits(vm, { cpuPeriod: '100000', cpuQuota: '200000' }, plain, false, host), false, '2 vCPUs');
  assert.equal(warmFits(vm, { cpuShares: '1' }, plain, false, host), false, 'shares libvirt refuses: the cold path reports them');
  assert.equal(warmFits(vm, { memoryLimitInBytes: '1024' }, plain, false, host), false);
  assert.equal(warmFits(vm, {}, parseVmAnnotations({ VirtletVCPUCount: '2' }), true, host), false);
  assert.equal(warmFits(vm, {}, parseVmAnnotations({ VirtletSystemUUID: '53008994-44c0-4017-ad44-9c49758083da' }), false, host), false);
  assert.equal(warmFits(vm, {}, parseVmAnnotations({ VirtletDiskDriver: 'virtio' }), false, host), true);
  assert.equal(warmFits({ ...vm, domainType: 'kvm' }, {}, parseVmAnnotations({ VirtletCPUModel: 'host-model' }), false, { ...host, domainType: 'kvm' }), false);
});

test('warm VMs take up to WARM_MAX_NICS TAP NICs and no SR-IOV VF', () => {
  const tap = (i: number): VmInterface => ({ name: `net${i}`, mac: `52:54:00:00:00:0${i}`, mtu: 1500, ips: [], routes: [], binding: { kind: 'tap', tap: `vtap${i}`, bridge: `vbr${i}` } });
  const net = (interfaces: VmInterface[]): VmNetwork => ({ interfaces, dns: { nameservers: [], search: [], options: [] } });
  assert.deepEqual(warmTapNics(net([tap(1)])), [{ tap: 'vtap1', mac: '52:54:00:00:00:01', mtu: 1500 }]);
  assert.equal(warmTapNics(net(Array.from({ length: WARM_MAX_NICS }, (_, i) => tap(i))))!.length, WARM_MAX_NICS);
  assert.equal(warmTapNics(net(Array.from({ length: WARM_MAX_NICS + 1 }, (_, i) => tap(i)))), undefined);
  assert.equal(warmTapNics(net([tap(1), { ...tap(2), binding: { kind: 'sriov', pciAddress: '0000:03:10.2' } }])), undefined);
});
