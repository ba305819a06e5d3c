/**
 * One faulted pod cycle and the count of what it left behind, shared by the fault test
 * (test/integration/faults/) and `npm run bench -- faults`.
 *
 * A cycle: start `vmlet serve` with one fault point armed (src/fault_points.ts), drive a pod
 * through Run → Create → Start → StopPodSandbox → RemovePodSandbox until the armed point kills
 * serve or netd (a killed netd is restarted by serve and the pod may go on), stop that daemon, start vmlet again on the same dirs without the
 * fault, clean up through the CRI as kubelet would (Stop and Remove of everything listed), prove
 * the runtime still works with one clean pod, stop it, and count leftovers on the host.
 *
 * Leftovers are counted from the host, not from vmlet's records (a record vmlet lost is exactly
 * what must not leak): netns of every sandbox id either daemon ever logged and this instance's
 * warm netns, veths on the test's CNI bridge, IPAM reservations, CNI cache entries, libvirt
 * domains owned by this state dir, its QEMU processes, records and VM directories.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from './daemon.js';
import { qemuPids } from './e2e.js';
import { openFdCount, processTree, rssKiB } from './proc_readers.js';
import { LibvirtClient } from '../../src/libvirt/client.js';
import { parseDomainMetadata } from '../../src/libvirt/domain_xml.js';
import { isOwnWarmNetns, netnsNameFor } from '../../src/network/names.js';
import { ownerIdFor } from '../../src/store/owner.js';
import { FAULT_DIR_ENV, type FaultPointName } from '../../src/fault_points.js';

export interface FaultRig {
  /** The daemon dir every cycle reuses (images stay pulled). */
  dir: string;
  stateDir: string;
  bridge: string;
  /** host-local's dataDir of the test conflist. */
  ipamDir: string;
  imageRef: string;
  tag: string;
}

export interface CycleResult {
  point: FaultPointName;
  warm: boolean;
  /** The armed point was reached: the process that reached it died by SIGKILL. */
  faulted: boolean;
  /** The CRI call that the fault broke (undefined when every call answered: serve restarted a killed netd and it recovered in place). */
  brokenCall?: string;
  /** A clean pod ran Run → Remove after the restart. */
  healthy: boolean;
  leftovers: Record<string, string[]>;
  /** serve after cleanup: open fds and RSS of serve + netd (KiB). */
  serveFds: number;
  rssKiB: number;
  ms: number;
}

const CALL_DEADLINE_MS = 120_000;

/** The points a warm VM passes: claimed at Run, adopted at Create, resumed at Start, given back at Stop. */
export const WARM_FAULT_POINTS: FaultPointName[] = ['sandbox.run.after-network', 'container.create.after-domain', 'container.start.after-domain-start', 'sandbox.stop.after-containers'];

function podConfig(rig: FaultRig, name: string) {
  return {
    metadata: { name, namespace: 'faults', uid: `uid-${name}`, attempt: 0 },
    hostname: name,
    log_directory: join(rig.dir, 'logs', name),
    linux: { security_context: { namespace_options: {} } },
  };
}

/** Run → Create → Start → Stop → Remove; returns the name of the first call that failed. */
async function podLifecycle(d: TestDaemon, rig: FaultRig, name: string): Promise<string | undefined> {
  const config = podConfig(rig, name);
  let sandboxId: string;
  try {
    sandboxId = (await d.runtime.RunPodSandbox!({ config }, { deadlineMs: CALL_DEADLINE_MS })).pod_sandbox_id;
  } catch {
    return 'RunPodSandbox';
  }
  let containerId: string;
  try {
    containerId = (await d.runtime.CreateContainer!({
      pod_sandbox_id: sandboxId,
      config: { metadata: { name: 'vm', attempt: 0 }, image: { image: rig.imageRef }, log_path: 'vm.log' },
      sandbox_config: config,
    }, { deadlineMs: CALL_DEADLINE_MS })).container_id;
  } catch {
    return 'CreateContainer';
  }
  try {
    await d.runtime.StartContainer!({ container_id: containerId }, { deadlineMs: CALL_DEADLINE_MS });
  } catch {
    return 'StartContainer';
  }
  try {
    await d.runtime.StopPodSandbox!({ pod_sandbox_id: sandboxId }, { deadlineMs: CALL_DEADLINE_MS });
  } catch {
    return 'StopPodSandbox';
  }
  try {
    await d.runtime.RemovePodSandbox!({ pod_sandbox_id: sandboxId }, { deadlineMs: CALL_DEADLINE_MS });
  } catch {
    return 'RemovePodSandbox';
  }
  return undefined;
}

/** What kubelet does to a pod it no longer wants: Stop, then Remove, of everything listed. */
async function removeEverything(d: TestDaemon): Promise<void> {
  for (const c of (await d.runtime.ListContainers!({})).containers) {
    await d.runtime.RemoveContainer!({ container_id: c.id }, { deadlineMs: CALL_DEADLINE_MS });
  }
  for (const s of (await d.runtime.ListPodSandbox!({})).items) {
    await d.runtime.StopPodSandbox!({ pod_sandbox_id: s.id }, { deadlineMs: CALL_DEADLINE_MS });
    await d.runtime.RemovePodSandbox!({ pod_sandbox_id: s.id }, { deadlineMs: CALL_DEADLINE_MS });
  }
}

function listDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

/** Files under `dir` (recursively), relative; directories themselves do not count. */
function filesUnder(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of listDir(dir)) {
    const path = join(dir, name);
    if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) out.push(...filesUnder(path, join(prefix, name)));
    else out.push(join(prefix, name));
  }
  return out;
}

/** Counts what vmlet left on the host; `sandboxIds` are every id its logs named. */
export async function countLeftovers(rig: FaultRig, sandboxIds: Iterable<string>): Promise<Record<string, string[]>> {
  const owner = ownerIdFor(rig.stateDir);
  const netns = listDir('/run/netns');
  const ids = [...sandboxIds];
  const left: Record<string, string[]> = {};
  left.netns = netns.filter((n) => ids.some((id) => netnsNameFor(id) === n) || isOwnWarmNetns(n, owner));
  const bridged = existsSync(`/sys/class/net/${rig.bridge}`) ? listDir(`/sys/class/net/${rig.bridge}/brif`) : [];
  left.bridgePorts = bridged;
  // host-local keeps `lock` and `last_reserved_ip.N`; every other file is a reserved address.
  left.ipam = filesUnder(rig.ipamDir).filter((f) => !/(^|\/)(lock|last_reserved_ip\.\d+)$/.test(f));
  left.cniCache = filesUnder(join(rig.stateDir, 'cni-cache')).filter((f) => ids.some((id) => f.includes(id)));
  const client = await LibvirtClient.connect();
  try {
    const owned: string[] = [];
    for (const dom of await client.listAllDomains()) {
      const meta = parseDomainMetadata(await client.getXmlDesc(dom).catch(() => ''));
      if (meta?.owner === owner) owned.push(dom.name);
    }
    left.domains = owned;
  } finally {
    await client.close();
  }
  left.qemu = qemuPids(rig.stateDir).map(String);
  left.records = [...filesUnder(join(rig.stateDir, 'sandboxes')), ...filesUnder(join(rig.stateDir, 'containers')), ...filesUnder(join(rig.stateDir, 'netd'))]
    .filter((f) => /[0-9a-f]{64}/.test(f));
  left.vmDirs = listDir(join(rig.stateDir, 'vms'));
  left.qmpSockets = listDir(join(rig.stateDir, 'qmp'));
  left.volumeExports = listDir(join(rig.stateDir, 'volumes'));
  for (const key of Object.keys(left)) if (left[key]!.length === 0) delete left[key];
  return left;
}

const SANDBOX_ID = /\b[0-9a-f]{64}\b/g;

export async function runFaultCycle(rig: FaultRig, point: FaultPointName, opts: { warm: boolean; index: number }): Promise<CycleResult> {
  const started = Date.now();
  const args = ['--kvm', 'off', '--vm-warm-pool', opts.warm ? '1' : '0'];
  const ids = new Set<string>();
  const seen = (d: TestDaemon) => {
    for (const m of d.output().matchAll(SANDBOX_ID)) ids.add(m[0]);
  };
  const faultDir = join(rig.dir, 'faults');
  mkdirSync(faultDir, { recursive: true });
  const armed = join(faultDir, point);
  writeFileSync(armed, '');
  const faultedDaemon = await startTestDaemon({ dir: rig.dir, args, env: { [FAULT_DIR_ENV]: faultDir } });
  let brokenCall: string | undefined;
  let faulted = false;
  try {
    if (opts.warm) await waitForWarmPool(faultedDaemon);
    brokenCall = await podLifecycle(faultedDaemon, rig, `fault-${rig.tag}-${opts.index}`);
  } finally {
    const timer = setTimeout(() => faultedDaemon.child.kill('SIGKILL'), 30_000);
    await faultedDaemon.stop();
    clearTimeout(timer);
    seen(faultedDaemon);
  }
  // serve's own death (before our SIGTERM), or netd's (serve logs how its netd exited).
  const netdKilled = faultedDaemon.output().split('\n').some((l) => l.includes('netd died') && l.includes('SIGKILL'));
  // The point consumes its file when reached; the process that reached it must then have died.
  faulted = !existsSync(armed) && (faultedDaemon.child.signalCode === 'SIGKILL' || netdKilled);
  rmSync(armed, { force: true });

  const d = await startTestDaemon({ dir: rig.dir, args });
  let serveFds = 0;
  let rss = 0;
  let healthy = false;
  try {
    await removeEverything(d);
    healthy = (await podLifecycle(d, rig, `after-${rig.tag}-${opts.index}`)) === undefined;
    await removeEverything(d);
    serveFds = openFdCount(d.child.pid!) ?? 0;
    rss = processTree(d.child.pid!).reduce((sum, pid) => sum + (rssKiB(pid) ?? 0), 0);
  } finally {
    seen(d);
    const timer = setTimeout(() => d.child.kill('SIGKILL'), 30_000);
    await d.stop();
    clearTimeout(timer);
  }
  return { point, warm: opts.warm, faulted, brokenCall, healthy, leftovers: await countLeftovers(rig, ids), serveFds, rssKiB: rss, ms: Date.now() - started };
}

async function waitForWarmPool(d: TestDaemon): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (!/warm VM ready|warm pool (filled|ready)/i.test(d.output())) {
    if (Date.now() > deadline) throw new Error('the warm pool did not fill');
    if (d.child.exitCode !== null || d.child.signalCode !== null) return;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * A daemon dir with a test conflist (a bridge with a random tag, host-local in the dir) and an
 * empty 64 MiB disk image served on loopback and pulled once; `close` removes what the cycles
 * left (a plain daemon on the same dirs, then the dirs, the bridge and the server).
 */
export async function createFaultRig(subnetPrefix: string): Promise<FaultRig & { close(): Promise<void> }> {
  const tag = randomBytes(3).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-faults-'));
  chmodSync(dir, 0o711); // QEMU's user traverses it
  const served = join(dir, 'served.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', served, '64M']);
  const bytes = readFileSync(served);
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': bytes.length });
    res.end(bytes);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const imageRef = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/fault-disk.qcow2`;
  const rig: FaultRig = { dir, stateDir: join(dir, 'state'), bridge: `vfb${tag}`, ipamDir: join(dir, 'ipam'), imageRef, tag };
  const close = async () => {
    server.close();
    const d = await startTestDaemon({ dir, args: ['--kvm', 'off'] }).catch(() => undefined);
    if (d) {
      for (const s of (await d.runtime.ListPodSandbox!({}).catch(() => ({ items: [] }))).items) {
        await d.runtime.RemovePodSandbox!({ pod_sandbox_id: s.id }).catch(() => {});
      }
      await d.cleanup();
    }
    rmSync(dir, { recursive: true, force: true });
    try {
      execFileSync('ip', ['link', 'del', rig.bridge], { stdio: 'ignore' });
    } catch {
      /* not there */
    }
  };
  try {
    mkdirSync(join(dir, 'cni'), { recursive: true });
    writeFileSync(join(dir, 'cni', '10-faults.conflist'), JSON.stringify({
      cniVersion: '1.0.0',
      name: `vmlet-faults-${tag}`,
      plugins: [{ type: 'bridge', bridge: rig.bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: rig.ipamDir, ranges: [[{ subnet: `${subnetPrefix}.0/24` }]] } }],
    }));
    const d = await startTestDaemon({ dir, args: ['--kvm', 'off'] });
    try {
      await d.image.PullImage!({ image: { image: imageRef } });
    } finally {
      await d.stop();
    }
  } catch (err) {
    await close();
    throw err;
  }
  return Object.assign(rig, { close });
}
