/**
 * Pod sandboxes through the CRI against a real daemon, real netd, Debian's real CNI plugins and
 * real namespaces. Pod networks use 198.18.0.0/15 with no masquerade; every test checks that
 * nothing is left behind.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readdirSync, existsSync, rmSync, chmodSync, readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { startTestDaemon, grpcCode, type TestDaemon } from '../../helpers/daemon.js';
import { netnsNameFor } from '../../../src/network/names.js';
import { FAULT_DIR_ENV } from '../../../src/fault_points.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';

let d: TestDaemon;
const tag = randomBytes(3).toString('hex');
const bridge = `vtb${tag}`;
const ipamDir = () => join(d.dir, 'ipam');
/** Where the tests put their own CNI plugins (a second bin dir of the daemon). */
const testPluginDir = join(process.env.TMPDIR ?? '/tmp', `vmlet-failing-${tag}`);
/** Test-only fault points of the daemon (src/fault_points.ts): a file named after a point arms it once. */
const faultDir = join(process.env.TMPDIR ?? '/tmp', `vmlet-sandbox-faults-${tag}`);

before(async () => {
  await ensureLibvirtd();
  mkdirSync(faultDir, { recursive: true });
  d = await startTestDaemon({ args: ['--cni-bin-dir', `/usr/lib/cni:${testPluginDir}`], env: { [FAULT_DIR_ENV]: faultDir } });
  writeFileSync(join(d.cniConfDir, '10-test.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-test-${tag}`,
    plugins: [
      { type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: ipamDir(), ranges: [[{ subnet: '198.18.77.0/24' }]], routes: [{ dst: '198.18.0.0/15' }] } },
      { type: 'tuning', sysctl: {} },
    ],
  }));
});

after(async () => {
  // Remove whatever sandboxes a failed test left, through the product's own teardown.
  if (d) {
    for (const item of (await d.runtime.ListPodSandbox!({}).catch(() => ({ items: [] }))).items) {
      await d.runtime.RemovePodSandbox!({ pod_sandbox_id: item.id }).catch((err: Error) => console.error('cleanup:', err.message));
    }
  }
  await d?.cleanup();
  rmSync(faultDir, { recursive: true, force: true });
  // The bridge plugin never deletes its bridge (by design); the test created it, the test removes it.
  try {
    execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
  } catch {
    /* not there */
  }
  rmSync(testPluginDir, { recursive: true, force: true });
});

/** Writes a conflist of the test bridge network with `next` chained after the bridge; returns its path. */
function writeBridgeChain(file: string, next: object): string {
  const conf = join(d.cniConfDir, file);
  writeFileSync(conf, JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-test-${tag}`,
    plugins: [
      { type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: ipamDir(), ranges: [[{ subnet: '198.18.77.0/24' }]] } },
      next,
    ],
  }));
  return conf;
}

function podConfig(name: string, attempt = 0) {
  return {
    metadata: { name, namespace: 'default', uid: `uid-${name}-${tag}`, attempt },
    hostname: name,
    log_directory: `/var/log/pods/default_${name}`,
    dns_config: { servers: ['198.18.0.53'], searches: ['svc.cluster.local'], options: ['ndots:5'] },
    port_mappings: [{ container_port: 8080 }],
    labels: { app: 'wire', tier: name },
    annotations: { note: 'x' },
    linux: { security_context: { namespace_options: {} } },
  };
}

/**
 * This daemon's sandbox namespaces only: those of every sandbox id its log named. Other tests
 * (also the parallel lane of `npm test`) make and remove vmlet namespaces of their own meanwhile.
 */
function netnsList(): string[] {
  if (!existsSync('/run/netns')) return [];
  const own = new Set([...d.output().matchAll(/\b[0-9a-f]{64}\b/g)].map((m) => netnsNameFor(m[0])));
  return readdirSync('/run/netns').filter((n) => own.has(n));
}

function leases(): string[] {
  const dir = join(ipamDir(), `vmlet-test-${tag}`);
  return existsSync(dir) ? readdirSync(dir).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
}

/** The verbose info once netd has prepared the VM side (it does so after RunPodSandbox returns). */
async function vmSideReady(id: string): Promise<{ netnsPath: string; network: { vmSide: string; vmNetwork: any; dhcp: { running: boolean } } }> {
  for (let i = 0; i < 200; i++) {
    const info = JSON.parse((await d.runtime.PodSandboxStatus!({ pod_sandbox_id: id, verbose: true })).info.info);
    // network is null while netd restarts.
    assert.notEqual(info.network?.vmSide, 'failed', `VM side failed: ${info.network?.error}`);
    if (info.network?.vmSide === 'ready') return info;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`VM side of sandbox ${id} not ready after 5 s`);
}

function linksIn(ns: string): string[] {
  return (JSON.parse(execFileSync('ip', ['-n', ns, '-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string }[]).map((l) => l.ifname);
}

test('RunPodSandbox builds netns + CNI + bridge/TAP + DHCP; status, list, stop, remove leave nothing', async () => {
  const nsBefore = netnsList();
  const { pod_sandbox_id: id } = await d.runtime.RunPodSandbox!({ config: podConfig('web') });
  assert.match(id, /^[0-9a-f]{64}$/);

  const st = await d.runtime.PodSandboxStatus!({ pod_sandbox_id: id, verbose: true });
  assert.equal(st.status.state, 'SANDBOX_READY');
  assert.match(st.status.network.ip, /^198\.18\.77\.\d+$/);
  assert.equal(st.status.metadata.name, 'web');
  assert.equal(st.status.labels.tier, 'web');
  assert.equal(st.status.annotations.note, 'x');
  assert.ok(BigInt(st.status.created_at) > 1_600_000_000_000_000_000n);
  // The VM side (wiring, DHCP) is prepared after RunPodSandbox returns (CreateContainer waits for it).
  const info = await vmSideReady(id);
  assert.match(info.netnsPath, /^\/run\/netns\/vmlet-/);
  const iface = info.network.vmNetwork.interfaces[0];
  assert.equal(iface.binding.kind, 'tap');
  assert.equal(iface.ips[0].address, st.status.network.ip);
  assert.deepEqual(info.network.vmNetwork.dns.nameservers, ['198.18.0.53']);
  assert.equal(info.network.dhcp.running, true);

  const ns = info.netnsPath.split('/').pop()!;
  assert.ok(netnsList().includes(ns));
  const links = linksIn(ns);
  assert.ok(links.includes(iface.binding.tap), `TAP in ${links}`);
  assert.ok(links.includes(iface.binding.bridge), `bridge in ${links}`);
  assert.equal(leases().length, 1);

  // Idempotent: the same metadata returns the same sandbox.
  assert.equal((await d.runtime.RunPodSandbox!({ config: podConfig('web') })).pod_sandbox_id, id);

  // List with filters.
  assert.equal((await d.runtime.ListPodSandbox!({ filter: {} })).items.filter((i: { id: string }) => i.id === id).length, 1);
  assert.equal((await d.runtime.ListPodSandbox!({ filter: { label_selector: { app: 'wire', tier: 'web' } } })).items.length, 1);
  assert.equal((await d.runtime.ListPodSandbox!({ filter: { label_selector: { app: 'other' } } })).items.length, 0);
  assert.equal((await d.runtime.ListPodSandbox!({ filter: { state: { state: 'SANDBOX_NOTREADY' } } })).items.length, 0);
  assert.equal((await d.runtime.ListPodSandbox!({ filter: { id: id.slice(0, 12) } })).items.length, 1);

  await d.runtime.StopPodSandbox!({ pod_sandbox_id: id });
  await d.runtime.StopPodSandbox!({ pod_sandbox_id: id }); // idempotent
  const stopped = await d.runtime.PodSandboxStatus!({ pod_sandbox_id: id });
  assert.equal(stopped.status.state, 'SANDBOX_NOTREADY');
  assert.ok(stopped.status.network, 'a stopped sandbox still sends network: {}');
  assert.equal(stopped.status.network.ip ?? '', '');
  assert.equal(netnsList().includes(ns), false);
  assert.equal(leases().length, 0);

  await d.runtime.RemovePodSandbox!({ pod_sandbox_id: id });
  await d.runtime.RemovePodSandbox!({ pod_sandbox_id: id });
  assert.equal(await grpcCode(d.runtime.PodSandboxStatus!({ pod_sandbox_id: id })), grpc.status.NOT_FOUND);
  assert.deepEqual(netnsList().sort(), nsBefore.sort());
  assert.equal(readdirSync(join(d.stateDir, 'netd')).filter((f) => f.endsWith('.json')).length, 0);
});

test('concurrent RunPodSandbox calls for one pod build one sandbox', async () => {
  const ids = await Promise.all([1, 2, 3].map(() => d.runtime.RunPodSandbox!({ config: podConfig('twin') })));
  assert.equal(new Set(ids.map((r) => r.pod_sandbox_id)).size, 1);
  await d.runtime.RemovePodSandbox!({ pod_sandbox_id: ids[0].pod_sandbox_id }); // stops first
  assert.equal(leases().length, 0);
});

test('a failing plugin rolls everything back and returns its error text', async () => {
  execFileSync('mkdir', ['-p', testPluginDir]);
  const plugin = join(testPluginDir, 'vmlet-test-fail');
  writeFileSync(plugin, '#!/bin/sh\nif [ "$CNI_COMMAND" = ADD ]; then echo \'{"cniVersion":"1.0.0","code":7,"msg":"deliberate test failure"}\'; exit 1; fi\nexit 0\n');
  chmodSync(plugin, 0o755);
  const conf = writeBridgeChain('05-failing.conflist', { type: 'vmlet-test-fail' });
  const nsBefore = netnsList();
  try {
    const err = await d.runtime.RunPodSandbox!({ config: podConfig('broken') }).then(
      () => assert.fail('RunPodSandbox succeeded with a failing plugin'),
      (e: grpc.ServiceError) => e,
    );
    assert.match(err.details, /deliberate test failure/);
    assert.deepEqual(netnsList().sort(), nsBefore.sort());
    assert.equal(leases().length, 0, 'the IPAM lease of the bridge plugin was released by the rollback');
    assert.equal((await d.runtime.ListPodSandbox!({ filter: { label_selector: { tier: 'broken' } } })).items.length, 0);
  } finally {
    rmSync(conf, { force: true });
  }
});

test('an interface that cannot be wired after Run: the sandbox goes NOTREADY with the reason, and stop/remove leave nothing', async () => {
  execFileSync('mkdir', ['-p', testPluginDir]);
  execFileSync('cp', [join(import.meta.dirname, '../../fixtures/cni/plugins/multinic'), join(testPluginDir, 'vmlet-test-multinic')]);
  // Claims a second sandbox interface that does not exist: CNI ADD succeeds, the wiring cannot.
  const conf = writeBridgeChain('05-phantom.conflist', { type: 'vmlet-test-multinic', passthrough: true, phantomInterface: 'ghost0' });
  const nsBefore = netnsList();
  try {
    const { pod_sandbox_id: id } = await d.runtime.RunPodSandbox!({ config: podConfig('phantom') });
    let status: any;
    for (let i = 0; i < 200; i++) {
      status = await d.runtime.PodSandboxStatus!({ pod_sandbox_id: id, verbose: true });
      if (status.status.state === 'SANDBOX_NOTREADY') break;
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(status.status.state, 'SANDBOX_NOTREADY', 'kubelet must see the sandbox is not usable');
    const info = JSON.parse(status.info.info);
    assert.match(info.notReadyReason, /ghost0/);
    assert.equal(info.network.vmSide, 'failed');
    // The interface that was wired first (eth0) was unwired again: no bridge or TAP left in the netns.
    const ns = (info.netnsPath as string).split('/').pop()!;
    assert.deepEqual(linksIn(ns).filter((l) => l !== 'lo').sort(), ['eth0']);
    const err = await d.runtime.CreateContainer!({ pod_sandbox_id: id, config: { metadata: { name: 'vm' }, image: { image: 'none' } }, sandbox_config: podConfig('phantom') })
      .then(() => assert.fail('CreateContainer succeeded in a sandbox whose network failed'), (e: grpc.ServiceError) => e);
    assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
    await d.runtime.StopPodSandbox!({ pod_sandbox_id: id });
    await d.runtime.RemovePodSandbox!({ pod_sandbox_id: id });
    assert.deepEqual(netnsList().sort(), nsBefore.sort());
    assert.equal(leases().length, 0);
    assert.equal(readdirSync(join(d.stateDir, 'netd')).filter((f) => f.endsWith('.json')).length, 0);
  } finally {
    rmSync(conf, { force: true });
  }
});

/** Runs `busybox udhcpc` in `ns` on `ifname`; returns the env its script saw, or undefined when no lease came. */
function udhcpc(ns: string, ifname: string, dir: string): Record<string, string> | undefined {
  const script = join(dir, `udhcpc-${ifname}.sh`);
  const out = join(dir, `udhcpc-${ifname}.env`);
  writeFileSync(script, `#!/bin/sh\n[ "$1" = bound ] && env > ${out}\nexit 0\n`);
  chmodSync(script, 0o755);
  rmSync(out, { force: true });
  try {
    execFileSync('ip', ['netns', 'exec', ns, 'busybox', 'udhcpc', '-f', '-q', '-n', '-t', '3', '-T', '1', '-i', ifname, '-s', script, '-O', 'staticroutes', '-O', 'mtu', '-O', 'search'], { stdio: 'ignore', timeout: 30_000 });
  } catch {
    return undefined;
  }
  if (!existsSync(out)) return undefined;
  return Object.fromEntries(readFileSync(out, 'utf8').split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

test('DHCP: the VM MAC on the sandbox bridge gets exactly the pod network; other MACs and the CNI side get nothing', async () => {
  const vmNs = `vt-${tag}-vm`;
  const outNs = `vt-${tag}-out`;
  const work = join(d.dir, 'dhcp');
  execFileSync('mkdir', ['-p', work]);
  const { pod_sandbox_id: id } = await d.runtime.RunPodSandbox!({ config: podConfig('dhcp') });
  try {
    const info = await vmSideReady(id);
    const iface = info.network.vmNetwork.interfaces[0];
    const sandboxNs = (info.netnsPath as string).split('/').pop()!;
    // A stand-in VM: a veth whose one end carries the VM's MAC, the other joins the sandbox bridge like the TAP.
    execFileSync('ip', ['netns', 'add', vmNs]);
    execFileSync('ip', ['link', 'add', `vtv${tag}`, 'netns', vmNs, 'address', iface.mac, 'type', 'veth', 'peer', 'name', `vtp${tag}`, 'netns', sandboxNs]);
    execFileSync('ip', ['-n', sandboxNs, 'link', 'set', `vtp${tag}`, 'master', iface.binding.bridge, 'up']);
    execFileSync('ip', ['-n', vmNs, 'link', 'set', `vtv${tag}`, 'up']);

    const env = udhcpc(vmNs, `vtv${tag}`, work);
    assert.ok(env, 'the VM MAC got a lease');
    assert.equal(env.ip, iface.ips[0].address);
    assert.equal(env.subnet, '255.255.255.0');
    assert.equal(env.dns, '198.18.0.53');
    assert.equal(env.search, 'svc.cluster.local');
    assert.equal(env.hostname, 'dhcp');
    assert.equal(env.mtu, String(iface.mtu));
    assert.match(env.staticroutes, /198\.18\.0\.0\/15 198\.18\.77\.1/);

    // Another MAC on the same bridge: no answer.
    execFileSync('ip', ['-n', vmNs, 'link', 'set', `vtv${tag}`, 'address', '02:00:00:00:00:42']);
    assert.equal(udhcpc(vmNs, `vtv${tag}`, work), undefined, 'a foreign MAC got a lease');

    // The VM's MAC, but arriving from the CNI side (the host bridge): the isolation rules drop it.
    execFileSync('ip', ['netns', 'add', outNs]);
    execFileSync('ip', ['link', 'add', `vto${tag}`, 'netns', outNs, 'address', iface.mac, 'type', 'veth', 'peer', 'name', `vth${tag}`]);
    execFileSync('ip', ['link', 'set', `vth${tag}`, 'master', bridge, 'up']);
    execFileSync('ip', ['-n', outNs, 'link', 'set', `vto${tag}`, 'up']);
    assert.equal(udhcpc(outNs, `vto${tag}`, work), undefined, 'DHCP from the CNI side was answered');
  } finally {
    for (const ns of [vmNs, outNs]) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        /* not created */
      }
    }
    try {
      execFileSync('ip', ['link', 'del', `vth${tag}`], { stdio: 'ignore' });
    } catch {
      /* gone with its peer's netns */
    }
    await d.runtime.RemovePodSandbox!({ pod_sandbox_id: id });
  }
});

function netdPid(): number {
  const serve = d.child.pid!;
  for (const p of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      if (stat.split(') ')[1]!.split(' ')[1] === String(serve) && readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('netd')) return Number(p);
    } catch {
      /* exited meanwhile */
    }
  }
  throw new Error('no netd child');
}

async function waitForNewNetd(old: number): Promise<number> {
  for (let i = 0; i < 200; i++) {
    try {
      const pid = netdPid();
      if (pid !== old) return pid;
    } catch {
      /* restarting */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('netd was not restarted');
}

test('netd dies: in-flight calls fail UNAVAILABLE, serve restarts it, DHCP of running sandboxes comes back', async () => {
  const nsBefore = netnsList();
  const { pod_sandbox_id: id } = await d.runtime.RunPodSandbox!({ config: podConfig('survivor') });
  try {
    await vmSideReady(id);
    const first = netdPid();
    // A call in flight when netd dies fails cleanly, and leaves nothing once retried away.
    const inflight = d.runtime.RunPodSandbox!({ config: podConfig('inflight') }).then(() => 'ok', (e: grpc.ServiceError) => e.code);
    await new Promise((r) => setTimeout(r, 5));
    process.kill(first, 'SIGKILL');
    const outcome = await inflight;
    assert.ok(outcome === grpc.status.UNAVAILABLE || outcome === 'ok', `in-flight call ended with ${outcome}`);
    const second = await waitForNewNetd(first);
    assert.notEqual(second, first);
    const info = await vmSideReady(id);
    assert.equal(info.network.dhcp.running, true, 'the DHCP responder was restored');
    const vmNs = `vt-${tag}-vm2`;
    const iface = info.network.vmNetwork.interfaces[0];
    const sandboxNs = (info.netnsPath as string).split('/').pop()!;
    try {
      execFileSync('ip', ['netns', 'add', vmNs]);
      execFileSync('ip', ['link', 'add', `vtw${tag}`, 'netns', vmNs, 'address', iface.mac, 'type', 'veth', 'peer', 'name', `vtq${tag}`, 'netns', sandboxNs]);
      execFileSync('ip', ['-n', sandboxNs, 'link', 'set', `vtq${tag}`, 'master', iface.binding.bridge, 'up']);
      execFileSync('ip', ['-n', vmNs, 'link', 'set', `vtw${tag}`, 'up']);
      const work = join(d.dir, 'dhcp2');
      execFileSync('mkdir', ['-p', work]);
      assert.equal(udhcpc(vmNs, `vtw${tag}`, work)?.ip, iface.ips[0].address);
    } finally {
      try {
        execFileSync('ip', ['netns', 'del', vmNs], { stdio: 'ignore' });
      } catch {
        /* not created */
      }
    }
  } finally {
    for (const item of (await d.runtime.ListPodSandbox!({})).items) await d.runtime.RemovePodSandbox!({ pod_sandbox_id: item.id });
  }
  assert.deepEqual(netnsList().filter((n) => !nsBefore.includes(n)), []);
  assert.equal(leases().length, 0);
});

test('netd dies while preparing the VM side of a sandbox: the new netd prepares it once, and teardown leaves nothing', async () => {
  const nsBefore = netnsList();
  const ids: string[] = [];
  try {
    // netd SIGKILLs itself once its interfaces are wired and before its record says so (a
    // fault point armed by a file): a preparation cut off midway, deterministically.
    writeFileSync(join(faultDir, 'netd.vm-side.after-wire'), '');
    const { pod_sandbox_id: id } = await d.runtime.RunPodSandbox!({ config: podConfig('midway') });
    ids.push(id);
    await vmSideReady(id);
    assert.equal(existsSync(join(faultDir, 'netd.vm-side.after-wire')), false, 'the fault point fired');
    // The new netd says so for this sandbox, and prepares it again.
    const redone = d.output().split('\n').some((l) => l.includes(id) && l.includes('was not ready when netd stopped'));
    assert.ok(redone, 'the new netd did not report the preparation the old one left unfinished');
    const interrupted = id;
    const info = await vmSideReady(interrupted);
    assert.equal(info.network.dhcp.running, true);
    const iface = info.network.vmNetwork.interfaces[0];
    const ns = (info.netnsPath as string).split('/').pop()!;
    const links = linksIn(ns);
    assert.deepEqual(links.filter((l) => l.startsWith('vtap')), [iface.binding.tap], `one TAP in ${links}`);
    assert.ok(links.includes(iface.binding.bridge), `bridge in ${links}`);
    const st = await d.runtime.PodSandboxStatus!({ pod_sandbox_id: interrupted });
    assert.equal(st.status.state, 'SANDBOX_READY');
    assert.equal(iface.ips[0].address, st.status.network.ip);
  } finally {
    for (const id of ids) await d.runtime.RemovePodSandbox!({ pod_sandbox_id: id });
  }
  assert.deepEqual(netnsList().sort(), nsBefore.sort());
  assert.equal(leases().length, 0);
});
