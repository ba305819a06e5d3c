/**
 * A real libvirt domain whose emulator is the vmwrapper launcher, with its NIC on a TAP that
 * exists only inside a pod-like netns (bridge + TAP, as netd's tap binding builds it). Checks that
 * the QEMU libvirt supervises is in that netns, holds no capabilities, sees only a private /dev,
 * brought the TAP's carrier up, and is the very pid libvirt reports; then that destroy leaves
 * nothing. Runs scripts/configure-libvirt.sh first (idempotent; restarts libvirtd only when it
 * has not loaded the settings).
 *
 * Names: domain and netns vmlet-test-<tag>; the launcher is installed at a fixed test path so
 * libvirt's emulator capability cache (keyed by path and ctime) is reused across runs.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { create } from 'xmlbuilder2';
import { DomainState, DomainUndefineFlags, LibvirtClient, isNoDomain, type DomainRef } from '../../../src/libvirt/client.js';
import { QEMU_NAMESPACE } from '../../../src/libvirt/domain_xml.js';
import { runTool } from '../../../src/network/iproute.js';
import { installVmwrapper } from '../../../src/vmwrapper/install.js';
import { vmwrapperEnv } from '../../../src/vmwrapper/netns_env.js';
import { tapNicQemuArgs } from '../../../src/vmwrapper/tap_nic_args.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';

const execFileAsync = promisify(execFile);
const repo = join(dirname(fileURLToPath(import.meta.url)), '../../..');
const QEMU = '/usr/bin/qemu-system-x86_64';
/** Fixed on purpose: a new emulator path costs a libvirt capability probe (seen 4-105 s). */
const LAUNCHER_DIR = '/run/vmlet-test/vmwrapper';

const tag = randomBytes(3).toString('hex');
const netns = `vmlet-test-${tag}`;
const netnsPath = `/run/netns/${netns}`;
const bridge = `vtbr${tag}`;
const tap = `vttap${tag}`;
const mac = `52:54:00:${tag.slice(0, 2)}:${tag.slice(2, 4)}:${tag.slice(4, 6)}`;
const domainNames = new Set<string>();
const qemuPids = new Set<number>();
let client: LibvirtClient;
let launcher: string;

async function ip(...args: string[]): Promise<string> {
  return (await runTool('ip', args, { timeoutMs: 10_000 })).stdout;
}

function domainXml(name: string, emulator: string, options: { nic?: boolean; env?: { name: string; value: string }[] }): string {
  const domain = create({ version: '1.0' }).ele('domain', { type: 'qemu' });
  domain.att('xmlns:qemu', QEMU_NAMESPACE);
  domain.ele('name').txt(name);
  domain.ele('uuid').txt(randomUUID());
  domain.ele('memory', { unit: 'MiB' }).txt('64');
  domain.ele('vcpu').txt('1');
  domain.ele('os').ele('type', { arch: 'x86_64', machine: 'q35' }).txt('hvm');
  domain.ele('on_poweroff').txt('destroy');
  const devices = domain.ele('devices');
  devices.ele('emulator').txt(emulator);
  devices.ele('controller', { type: 'usb', model: 'none' });
  devices.ele('memballoon', { model: 'none' });
  const args = options.nic ? tapNicQemuArgs([{ tap, mac, mtu: 1500 }]) : [];
  const env = options.env ?? [];
  if (args.length > 0 || env.length > 0) {
    const cmdline = domain.ele(QEMU_NAMESPACE, 'qemu:commandline');
    for (const value of args) cmdline.ele(QEMU_NAMESPACE, 'qemu:arg', { value });
    for (const e of env) cmdline.ele(QEMU_NAMESPACE, 'qemu:env', { name: e.name, value: e.value });
  }
  return domain.end({ headless: true, prettyPrint: true });
}

async function defineDomain(suffix: string, xml: (name: string) => string): Promise<DomainRef> {
  const name = `vmlet-test-${tag}${suffix}`;
  domainNames.add(name);
  return client.defineXml(xml(name));
}

/** The pid libvirt records for a running domain, from both its pid file and its status XML. */
async function libvirtPid(name: string): Promise<number> {
  const fromPidFile = Number.parseInt((await readFile(`/run/libvirt/qemu/${name}.pid`, 'utf8')).trim(), 10);
  const status = await readFile(`/run/libvirt/qemu/${name}.xml`, 'utf8');
  const m = /<domstatus [^>]*\bpid='(\d+)'/.exec(status);
  assert.ok(m, 'libvirt status XML has a pid');
  assert.equal(Number(m[1]), fromPidFile, 'pid file and status XML agree');
  qemuPids.add(fromPidFile);
  return fromPidFile;
}

async function procStatus(pid: number): Promise<Record<string, string>> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  return Object.fromEntries(text.trim().split('\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));
}

async function alive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Processes whose argv[0] is the launcher: there must never be one left (exec, no wrapper parent). */
async function launcherProcesses(): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0')[0] === launcher || cmdline.split('\0')[1] === launcher) found.push(Number(entry));
  }
  return found;
}

async function tapLink(): Promise<{ flags: string[]; operstate: string }> {
  const [link] = JSON.parse(await ip('-n', netns, '-j', 'link', 'show', 'dev', tap)) as { flags: string[]; operstate: string }[];
  assert.ok(link);
  return link;
}

async function removeDomain(name: string): Promise<void> {
  let dom: DomainRef;
  try {
    dom = await client.lookupByName(name);
  } catch (err) {
    if (isNoDomain(err)) return;
    throw err;
  }
  await client.destroy(dom).catch(() => undefined); // not running is fine
  await client.undefine(dom, DomainUndefineFlags.MANAGED_SAVE | DomainUndefineFlags.NVRAM);
}

before(async () => {
  const { stderr } = await execFileAsync(join(repo, 'scripts/configure-libvirt.sh'), [], { timeout: 300_000 });
  process.stderr.write(stderr);
  await ensureLibvirtd();
  // The first call may wait for libvirt's QEMU capability probe.
  client = await LibvirtClient.connect({ callTimeoutMs: 180_000 });
  launcher = await installVmwrapper(LAUNCHER_DIR);
  await ip('netns', 'add', netns);
  await ip('-n', netns, 'link', 'add', bridge, 'type', 'bridge');
  // As src/network/bindings/tap.ts makes it: vnet_hdr, no multi_queue, no owner.
  await ip('-n', netns, 'tuntap', 'add', 'dev', tap, 'mode', 'tap', 'vnet_hdr');
  await ip('-n', netns, 'link', 'set', tap, 'master', bridge, 'up');
  await ip('-n', netns, 'link', 'set', bridge, 'up');
});

after(async () => {
  const failures: unknown[] = [];
  if (client) {
    for (const name of domainNames) await removeDomain(name).catch((err) => failures.push(err));
  }
  await ip('netns', 'delete', netns).catch(() => undefined);
  // libvirt keeps a log per domain name; the undefined test domains' logs go too.
  for (const name of domainNames) await rm(`/var/log/libvirt/qemu/${name}.log`, { force: true });
  for (const pid of qemuPids) await waitFor(`QEMU ${pid} gone`, async () => !(await alive(pid)), 10_000).catch((e) => failures.push(e));
  if (client) {
    const left = (await client.listAllDomains()).filter((d) => domainNames.has(d.name)).map((d) => d.name);
    await client.close();
    assert.deepEqual(left, [], 'no test domain left');
  }
  await assert.rejects(stat(netnsPath), 'netns removed');
  assert.deepEqual(await launcherProcesses(), [], 'no launcher process left');
  assert.deepEqual(failures, []);
});

test('QEMU runs in the pod netns without privileges, on the TAP, as the pid libvirt supervises', async (t) => {
  const dom = await defineDomain('', (name) => domainXml(name, launcher, { nic: true, env: vmwrapperEnv(netns) }));
  assert.equal((await tapLink()).flags.includes('LOWER_UP'), false, 'no carrier before QEMU opens the TAP');
  const started = performance.now();
  await client.create(dom);
  t.diagnostic(`domain start through the launcher: ${(performance.now() - started).toFixed(0)} ms`);
  const pid = await libvirtPid(dom.name);

  // The supervised pid is QEMU itself, and no wrapper process exists.
  assert.equal(await readlink(`/proc/${pid}/exe`), QEMU);
  assert.deepEqual(await launcherProcesses(), []);

  // In the pod's network namespace.
  assert.equal(await readlink(`/proc/${pid}/ns/net`), `net:[${(await stat(netnsPath)).ino}]`);

  // No capabilities, none regainable; uid/gid 0 without supplementary groups (see README).
  const status = await procStatus(pid);
  for (const cap of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) assert.equal(status[cap], '0000000000000000', cap);
  assert.equal(status.NoNewPrivs, '1');
  assert.equal(status.Uid, '0\t0\t0\t0');
  assert.equal(status.Gid, '0\t0\t0\t0');
  assert.equal(status.Groups, '');
  assert.equal(status.Seccomp, '2', "QEMU's own seccomp sandbox (libvirt passes -sandbox on)");

  // libvirt's private /dev: only the device ACL (with /dev/net/tun), nothing else of the host's.
  assert.notEqual(await readlink(`/proc/${pid}/ns/mnt`), await readlink('/proc/self/ns/mnt'));
  const dev = (await readdir(`/proc/${pid}/root/dev`)).sort();
  const allowed = new Set(['full', 'kvm', 'net', 'null', 'ptmx', 'pts', 'random', 'shm', 'urandom', 'zero', 'mqueue', 'hugepages']);
  assert.deepEqual(dev.filter((d) => !allowed.has(d)), [], `private /dev: ${dev.join(' ')}`);
  assert.deepEqual(await readdir(`/proc/${pid}/root/dev/net`), ['tun']);

  // QEMU attached to the TAP: carrier up in the netns.
  await waitFor('TAP carrier', async () => (await tapLink()).flags.includes('LOWER_UP'), 5_000);
  assert.equal((await tapLink()).operstate, 'UP');

  // Destroy ends that very process, and the TAP loses its carrier.
  await client.destroy(dom);
  await waitFor(`QEMU ${pid} to exit`, async () => !(await alive(pid)), 10_000);
  assert.equal((await tapLink()).flags.includes('LOWER_UP'), false);
  await client.undefine(dom);
  await assert.rejects(client.lookupByName(dom.name), (err) => isNoDomain(err));
});

test('a domain with an invalid VMLET_NETNS does not start, and says why', async () => {
  const dom = await defineDomain('-bad', (name) =>
    domainXml(name, launcher, { env: [{ name: 'VMLET_NETNS', value: `/run/netns/../netns/${netns}` }] }),
  );
  const why = /vmlet-vmwrapper: VMLET_NETNS does not name a vmlet network namespace/;
  const err = await client.create(dom).then(
    () => assert.fail('the domain started with an invalid VMLET_NETNS'),
    (e: Error) => e,
  );
  // libvirt usually quotes the emulator's stderr in the error; when it races to the monitor socket
  // first ("failed to connect to monitor socket") the reason is in the domain's log instead.
  if (!why.test(err.message)) {
    const log = await readFile(`/var/log/libvirt/qemu/${dom.name}.log`, 'utf8');
    assert.match(log, why, `start failed with "${err.message}" and the domain log does not say why`);
  }
  assert.equal((await client.getState(dom)).state, DomainState.SHUTOFF);
  assert.deepEqual(await launcherProcesses(), []);
});

test('start latency: the same domain through the launcher (no netns) and with QEMU as emulator', async (t) => {
  const direct = await defineDomain('-direct', (name) => domainXml(name, QEMU, {}));
  const wrapped = await defineDomain('-wrapped', (name) => domainXml(name, launcher, {}));
  const times: Record<string, number[]> = { direct: [], wrapped: [] };
  for (let round = 0; round < 3; round++) {
    for (const [label, dom] of [['direct', direct], ['wrapped', wrapped]] as const) {
      const started = performance.now();
      await client.create(dom);
      times[label]!.push(performance.now() - started);
      const pid = await libvirtPid(dom.name);
      assert.equal(await readlink(`/proc/${pid}/exe`), QEMU);
      const caps = (await procStatus(pid)).CapEff;
      // libvirt keeps root's capabilities for uid 0; only the launcher drops them.
      if (label === 'wrapped') assert.equal(caps, '0000000000000000');
      else assert.notEqual(caps, '0000000000000000');
      await client.destroy(dom);
      await waitFor(`QEMU ${pid} to exit`, async () => !(await alive(pid)), 10_000);
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[1]!;
  t.diagnostic(
    `domain start (median of 3): QEMU as emulator ${median(times.direct!).toFixed(0)} ms, ` +
      `through the launcher ${median(times.wrapped!).toFixed(0)} ms ` +
      `(all: ${times.direct!.map((x) => x.toFixed(0)).join('/')} vs ${times.wrapped!.map((x) => x.toFixed(0)).join('/')})`,
  );
});
