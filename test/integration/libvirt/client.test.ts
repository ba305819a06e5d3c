/**
 * LibvirtClient against the real libvirtd on /run/libvirt/libvirt-sock (started by the helper
 * when it does not answer). Domains are tiny (qemu/TCG, 32 MiB, no disk) and named
 * vmlet-test-<run>-*; every one created here is destroyed and undefined afterwards, even on failure.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import {
  DomainAffect,
  DomainEvent,
  DomainEventStoppedDetail,
  DomainShutdownFlags,
  DomainState,
  DomainUndefineFlags,
  DomainXmlFlags,
  LibvirtClient,
  LibvirtError,
  SchedulerParam,
  VIR_ERR_NO_DOMAIN,
  VIR_ERR_OPERATION_INVALID,
  isNoDomain,
  type DomainRef,
  type LifecycleEvent,
} from '../../../src/libvirt/client.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';

const execFileAsync = promisify(execFile);
const runPrefix = `vmlet-test-${process.pid}-${randomUUID().slice(0, 6)}-`;
const created = new Set<string>();
let client: LibvirtClient;

function tinyDomainXml(name: string, uuid = randomUUID()): string {
  return `<domain type='qemu'>
  <name>${name}</name>
  <uuid>${uuid}</uuid>
  <memory unit='MiB'>32</memory>
  <currentMemory unit='MiB'>32</currentMemory>
  <vcpu current='1'>2</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>`;
}

async function define(suffix: string): Promise<DomainRef> {
  const name = runPrefix + suffix;
  created.add(name);
  return client.defineXml(tinyDomainXml(name));
}

/** Destroys and undefines every domain of this run: those it named, and any other with the run's prefix. */
async function removeCreatedDomains(c: LibvirtClient): Promise<void> {
  const names = new Set(created);
  for (const d of await c.listAllDomains()) if (d.name.startsWith(runPrefix)) names.add(d.name);
  for (const name of names) {
    let dom: DomainRef;
    try {
      dom = await c.lookupByName(name);
    } catch (err) {
      if (isNoDomain(err)) continue;
      throw err;
    }
    await c.destroy(dom).catch(() => undefined); // not running is fine
    await c.undefine(dom, DomainUndefineFlags.MANAGED_SAVE | DomainUndefineFlags.SNAPSHOTS_METADATA | DomainUndefineFlags.NVRAM);
  }
}

function waitForEvent(events: LifecycleEvent[], name: string, event: number, timeoutMs: number): Promise<LifecycleEvent> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const poll = setInterval(() => {
      const found = events.find((e) => e.domain.name === name && e.event === event);
      if (found) {
        clearInterval(poll);
        resolve(found);
      } else if (Date.now() > deadline) {
        clearInterval(poll);
        reject(new Error(`no lifecycle event ${event} for ${name} within ${timeoutMs} ms; saw ${JSON.stringify(events.map((e) => [e.domain.name, e.event, e.detail]))}`));
      }
    }, 2);
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

before(async () => {
  await ensureLibvirtd();
  // The first define after libvirtd starts waits for QEMU's capability probe (seen up to 45 s).
  client = await LibvirtClient.connect({ callTimeoutMs: 120_000 });
}, { timeout: 240_000 });

after(async () => {
  if (!client) return;
  try {
    await removeCreatedDomains(client);
    const left = (await client.listAllDomains()).filter((d) => d.name.startsWith(runPrefix));
    assert.deepEqual(left, [], 'no test domain left behind');
  } finally {
    await client.close();
  }
}, { timeout: 120_000 });

test('ping, library version (matches libvirtd --version), hostname, capabilities', async () => {
  await client.ping();
  const { stdout } = await execFileAsync('libvirtd', ['--version']);
  const m = /(\d+)\.(\d+)\.(\d+)/.exec(stdout);
  assert.ok(m, stdout);
  const expected = BigInt(m[1]!) * 1_000_000n + BigInt(m[2]!) * 1_000n + BigInt(m[3]!);
  assert.equal(await client.getLibVersion(), expected);
  assert.equal(await client.getHostname(), hostname());
  const caps = await client.getCapabilities();
  assert.match(caps, /<capabilities>/);
  assert.match(caps, /<domain type='qemu'/);
  const domCaps = await client.getDomainCapabilities({ virtType: 'qemu', arch: 'x86_64' });
  assert.match(domCaps, /<domainCapabilities>/);
});

test('a missing domain is VIR_ERR_NO_DOMAIN (42) by name and by uuid, told apart by code', async () => {
  const byName = await client.lookupByName(`${runPrefix}does-not-exist`).catch((e: unknown) => e);
  assert.ok(byName instanceof LibvirtError, String(byName));
  assert.equal(byName.virCode, VIR_ERR_NO_DOMAIN);
  assert.ok(isNoDomain(byName));
  const byUuid = await client.lookupByUuid(randomUUID()).catch((e: unknown) => e);
  assert.ok(isNoDomain(byUuid));
  // A different fault keeps its own code: invalid XML is not "no domain".
  const badXml = await client.defineXml('<domain type="qemu"><name>').catch((e: unknown) => e);
  assert.ok(badXml instanceof LibvirtError);
  assert.ok(!isNoDomain(badXml));
});

test('domain lifecycle: define, start (STARTED event), state and info, tunables, destroy (STOPPED event), undefine', { timeout: 300_000 }, async (t) => {
  const events: LifecycleEvent[] = [];
  const unsubscribe = await client.onLifecycle((ev) => events.push(ev));
  t.after(unsubscribe);

  let mark = performance.now();
  const defined = await define('life');
  t.diagnostic(`define took ${(performance.now() - mark).toFixed(0)} ms`);
  const name = defined.name;
  assert.equal(defined.id, -1);
  await waitForEvent(events, name, DomainEvent.DEFINED, 5_000);
  assert.deepEqual(await client.lookupByName(name), defined);
  assert.deepEqual(await client.lookupByUuid(defined.uuid), defined);
  assert.ok((await client.listAllDomains()).some((d) => d.uuid === defined.uuid));
  assert.deepEqual(await client.getState(defined), { state: DomainState.SHUTOFF, reason: 0 });

  // While libvirt starts and later destroys the VM (destroy alone takes over a second), the event loop must keep turning.
  const loopDelay = monitorEventLoopDelay({ resolution: 5 });
  loopDelay.enable();
  t.after(() => loopDelay.disable());
  mark = performance.now();
  const running = await client.create(defined);
  t.diagnostic(`create (start) took ${(performance.now() - mark).toFixed(0)} ms`);
  assert.ok(running.id > 0, 'a running domain has an id');
  const started = await waitForEvent(events, name, DomainEvent.STARTED, 5_000);
  assert.equal(started.domain.uuid, defined.uuid);
  assert.deepEqual(await client.getState(running), { state: DomainState.RUNNING, reason: 1 /* BOOTED */ });

  const info1 = await client.getInfo(running);
  assert.equal(info1.state, DomainState.RUNNING);
  assert.equal(info1.maxMemKiB, 32n * 1024n);
  assert.equal(info1.nrVirtCpu, 1);
  assert.equal(typeof info1.cpuTimeNs, 'bigint');
  let info2 = info1;
  for (let i = 0; i < 40 && info2.cpuTimeNs <= info1.cpuTimeNs; i++) {
    await new Promise((r) => setTimeout(r, 100));
    info2 = await client.getInfo(running);
  }
  assert.ok(info2.cpuTimeNs > info1.cpuTimeNs, `cpu time grows: ${info1.cpuTimeNs} -> ${info2.cpuTimeNs}`);

  const xml = await client.getXmlDesc(running);
  assert.match(xml, new RegExp(`<name>${name}</name>`));
  // The domain has no disk: libvirt answers with its own error (not "no domain"), which shows the call was understood.
  const noDisk = await client.blockInfo(running, 'vda').catch((e: unknown) => e);
  assert.ok(noDisk instanceof LibvirtError && !isNoDomain(noDisk), String(noDisk));
  const stats = await client.memoryStats(running);
  assert.equal(stats.actualBalloon, 32n * 1024n);

  await client.setSchedulerParametersFlags(running, [{ field: SchedulerParam.CPU_SHARES, type: 'ullong', value: 512n }], DomainAffect.LIVE);
  const sched = await client.getSchedulerParametersFlags(running, DomainAffect.LIVE);
  assert.deepEqual(
    sched.find((p) => p.field === SchedulerParam.CPU_SHARES),
    { field: 'cpu_shares', type: 'ullong', value: 512n },
  );
  await client.setVcpusFlags(running, 2, DomainAffect.CONFIG);
  await client.setMemoryFlags(running, 24n * 1024n, DomainAffect.CONFIG);
  const inactive = await client.getXmlDesc(running, DomainXmlFlags.INACTIVE);
  assert.match(inactive, /<vcpu placement='static'>2<\/vcpu>/);
  assert.match(inactive, /<currentMemory unit='KiB'>24576<\/currentMemory>/);

  // The guest has no OS, so the power button does nothing, but the call itself must succeed.
  await client.shutdown(running, DomainShutdownFlags.ACPI_POWER_BTN);

  const destroyStart = performance.now();
  await client.destroy(running);
  const destroyMs = performance.now() - destroyStart;
  const stopped = await waitForEvent(events, name, DomainEvent.STOPPED, 1_000);
  const stoppedMs = performance.now() - destroyStart;
  assert.equal(stopped.detail, DomainEventStoppedDetail.DESTROYED);
  t.diagnostic(`destroy took ${destroyMs.toFixed(0)} ms; STOPPED event ${stoppedMs.toFixed(0)} ms after destroy began`);
  loopDelay.disable();
  const stallMs = loopDelay.max / 1e6;
  t.diagnostic(`longest event-loop stall from start to destroy: ${stallMs.toFixed(1)} ms`);
  assert.ok(stallMs < 250, `event loop stalled ${stallMs.toFixed(1)} ms`);
  assert.equal((await client.getState(defined)).state, DomainState.SHUTOFF);

  const again = await client.destroy(defined).catch((e: unknown) => e);
  assert.ok(again instanceof LibvirtError && again.virCode === VIR_ERR_OPERATION_INVALID, `destroying a stopped domain: ${String(again)}`);

  await client.undefine(defined, DomainUndefineFlags.MANAGED_SAVE | DomainUndefineFlags.SNAPSHOTS_METADATA | DomainUndefineFlags.NVRAM);
  await waitForEvent(events, name, DomainEvent.UNDEFINED, 5_000);
  const gone = await client.lookupByName(name).catch((e: unknown) => e);
  assert.ok(isNoDomain(gone));
});

test('many concurrent calls on one connection all get their own answer', async (t) => {
  const host = hostname();
  const n = 300;
  const started = performance.now();
  const results = await Promise.allSettled(
    Array.from({ length: n }, (_, i) => {
      switch (i % 3) {
        case 0:
          return client.getHostname().then((h) => assert.equal(h, host));
        case 1:
          return client.lookupByName(`${runPrefix}missing-${i}`).then(
            () => assert.fail('should not exist'),
            (err: unknown) => assert.ok(isNoDomain(err)),
          );
        default:
          return client.getLibVersion().then((v) => assert.ok(v > 0n));
      }
    }),
  );
  const ms = performance.now() - started;
  const failed = results.filter((r) => r.status === 'rejected');
  assert.deepEqual(failed, []);
  t.diagnostic(`${n} concurrent calls in ${ms.toFixed(1)} ms`);
});

test('latency: ping, and define+undefine of a tiny domain', { timeout: 600_000 }, async (t) => {
  const pings: number[] = [];
  for (let i = 0; i < 500; i++) {
    const s = performance.now();
    await client.ping();
    pings.push(performance.now() - s);
  }
  pings.sort((a, b) => a - b);
  const cycles: number[] = [];
  // Few rounds: on this host every define re-probes QEMU's capabilities (see the report), ~30 s each.
  for (let i = 0; i < 3; i++) {
    const s = performance.now();
    const dom = await define(`lat-${i}`);
    await client.undefine(dom);
    cycles.push(performance.now() - s);
    created.delete(dom.name);
  }
  cycles.sort((a, b) => a - b);
  t.diagnostic(
    `ping over ${pings.length}: p50 ${percentile(pings, 50).toFixed(3)} ms, p95 ${percentile(pings, 95).toFixed(3)} ms, max ${pings.at(-1)!.toFixed(3)} ms`,
  );
  t.diagnostic(
    `define+undefine over ${cycles.length}: p50 ${percentile(cycles, 50).toFixed(2)} ms, p95 ${percentile(cycles, 95).toFixed(2)} ms, max ${cycles.at(-1)!.toFixed(2)} ms`,
  );
  assert.ok(percentile(pings, 50) < 50, 'a ping is a local round trip');
});
