/**
 * End to end: exec, attach and port-forward with the real crictl v1.26.1 (kubelet's client-go
 * SPDY code) against a real `vmlet serve`, on ONE busybox test guest (test-guests/README.md): it has
 * no guest agent, so exec must fail cleanly and quickly; its serial console echoes what is typed
 * and prints protocol lines; its httpd answers on 8080. Plus vmlet's own SPDY client for 20
 * concurrent port-forward streams through one connection.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync, readdirSync } from 'node:fs';
import { request, type Server } from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startTestDaemon, grpcCode, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { serveTestGuest, waitFor, criLines, removeAllAndStop, deleteLink, qemuPids, clearStaleTestSubnet } from '../../helpers/e2e.js';
import { findCriTools } from '../../helpers/cri_tools.js';

const CRICTL = join(findCriTools(), 'crictl');
const tag = randomBytes(3).toString('hex');
const bridge = `vst${tag}`;
const subnet = '198.18.142';
let d: TestDaemon;
let imageServer: Server;
let sandboxId = '';
let containerId = '';
let logPath = '';
const children = new Set<ChildProcess>();

before(async () => {
  clearStaleTestSubnet(subnet);
  await ensureLibvirtd();
  let imageUrl: string;
  ({ url: imageUrl, server: imageServer } = await serveTestGuest());
  d = await startTestDaemon({ args: ['--kvm', 'off', '--vm-memory', '256Mi'] });
  writeFileSync(join(d.cniConfDir, '10-e2e.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: `vmlet-stream-${tag}`,
    plugins: [{ type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', dataDir: join(d.dir, 'ipam'), ranges: [[{ subnet: `${subnet}.0/24`, gateway: `${subnet}.1` }]] } }],
  }));
  const logDir = join(d.dir, 'pod-logs');
  mkdirSync(logDir, { recursive: true });
  await d.image.PullImage!({ image: { image: imageUrl } });
  const podConfig = { metadata: { name: 'stream', namespace: 'default', uid: `uid-stream-${tag}`, attempt: 0 }, hostname: 'stream-guest', log_directory: logDir, linux: {} };
  ({ pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config: podConfig }));
  ({ container_id: containerId } = await d.runtime.CreateContainer!({ pod_sandbox_id: sandboxId, config: { metadata: { name: 'vm' }, image: { image: imageUrl }, log_path: 'vm/0.log' }, sandbox_config: podConfig }));
  await d.runtime.StartContainer!({ container_id: containerId }, { deadlineMs: 180_000 });
  logPath = join(logDir, 'vm', '0.log');
  await waitFor('guest ready', 300_000, () => criLines(logPath).find((l) => l.text === 'VMLET-GUEST ready'));
});

after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await removeAllAndStop(d);
  imageServer?.close();
  deleteLink(bridge);
  // Nothing of this test's pod is left: no QEMU of this daemon, no netns of the sandbox.
  if (d) assert.deepEqual(qemuPids(d.stateDir), []);
  if (sandboxId) assert.deepEqual(readdirSync('/run/netns').filter((n) => n.startsWith(`vmlet-${sandboxId.slice(0, 8)}`)), []);
});

function crictl(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = execFile(CRICTL, ['--runtime-endpoint', `unix://${d.socket}`, ...args], { timeout: opts.timeoutMs ?? 60_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      children.delete(child);
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr, ms: Date.now() - started });
    });
    children.add(child);
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}

/** crictl in the background, its output collected. */
function crictlBackground(args: string[]): { child: ChildProcess; out: () => string } {
  const child = spawn(CRICTL, ['--runtime-endpoint', `unix://${d.socket}`, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (out += c));
  child.on('exit', () => children.delete(child));
  return { child, out: () => out };
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

function httpGet(port: number, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: '/', timeout: 20_000 }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

test('exec on a guest without an agent: ExecSync, crictl exec -s, -i and -it all fail with the agent error within the bounded wait', { timeout: 120_000 }, async () => {
  assert.equal(await grpcCode(d.runtime.ExecSync!({ container_id: containerId, cmd: ['echo', 'hi'], timeout: '10' })), 9 /* FAILED_PRECONDITION */);
  const sync = await crictl(['exec', '-s', containerId, 'echo', 'hi']);
  assert.notEqual(sync.code, 0);
  assert.match(sync.stderr, /FailedPrecondition desc = no guest agent answers/);
  // Through the streaming server (SPDY): the error arrives on the error stream.
  const piped = await crictl(['exec', '-i', containerId, 'cat'], { input: 'x\n' });
  assert.notEqual(piped.code, 0);
  assert.match(piped.stderr, /execing command in container: no guest agent answers/);
  assert.ok(piped.ms < 15_000, `exec -i took ${piped.ms} ms`);
  // With a terminal whose stdin never ends (util-linux script gives crictl a pty): no hang.
  const started = Date.now();
  const tty = spawn('script', ['-qec', `${CRICTL} --runtime-endpoint unix://${d.socket} exec -it ${containerId} sh`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(tty);
  let ttyOut = '';
  tty.stdout!.on('data', (c) => (ttyOut += c));
  await exited(tty);
  assert.match(ttyOut, /no guest agent answers/);
  assert.ok(Date.now() - started < 15_000, `exec -it took ${Date.now() - started} ms`);
});

test('attach: two crictl clients see the console; input from one is echoed to both; the CRI log and console.raw stay complete', { timeout: 180_000 }, async () => {
  const word = `hello-${tag}`;
  const reader = crictlBackground(['attach', containerId]);
  const writer = crictlBackground(['attach', '-i', containerId]);
  await new Promise((r) => setTimeout(r, 3000));
  writer.child.stdin!.write(`${word}\n`);
  // The guest's tty echoes the line to the serial console: every attached client gets it.
  await waitFor('the echo on the interactive client', 60_000, () => (writer.out().includes(word) ? true : undefined));
  await waitFor('the echo on the read-only client', 60_000, () => (reader.out().includes(word) ? true : undefined));
  await waitFor('the echo in the CRI log', 30_000, () => criLines(logPath).find((l) => l.text.includes(word)));
  // The CRI log kept every boot line written before anybody attached.
  const texts = criLines(logPath).map((l) => l.text);
  for (const line of ['VMLET-GUEST hostname stream-guest', `VMLET-GUEST instance-id ${containerId}`, 'VMLET-GUEST ready']) assert.ok(texts.includes(line), line);
  writer.child.kill('SIGTERM');
  reader.child.kill('SIGTERM');
  await Promise.all([exited(writer.child), exited(reader.child)]);
  // A third client after the first two left: the console is still there.
  const again = crictlBackground(['attach', '-i', containerId]);
  await new Promise((r) => setTimeout(r, 3000));
  again.child.stdin!.write(`${word}-again\n`);
  await waitFor('the echo after re-attaching', 60_000, () => (again.out().includes(`${word}-again`) ? true : undefined));
  again.child.kill('SIGTERM');
  await exited(again.child);
  const raw = readFileSync(join(d.stateDir, 'vms', containerId, 'console.raw'), 'latin1');
  assert.ok(raw.includes(`${word}-again`), 'console.raw has what the guest wrote while attached');
});

test('port-forward with crictl: the guest httpd through a forwarded port; a closed port fails on its own stream', { timeout: 120_000 }, async () => {
  const port = await freePort();
  const closed = await freePort();
  const pf = crictlBackground(['port-forward', sandboxId, `${port}:8080`, `${closed}:1`]);
  await waitFor('crictl listening', 30_000, () => (pf.out().includes(`Forwarding from 127.0.0.1:${closed}`) ? true : undefined));
  assert.equal((await httpGet(port)).trim(), 'vmlet-guest stream-guest');
  assert.equal((await httpGet(port)).trim(), 'vmlet-guest stream-guest', 'a second connection on the same session');
  // 20 concurrent connections through crictl's forward, as a kubectl user makes them.
  const codes = await Promise.all(Array.from({ length: 20 }, () => httpGet(port).then((b) => b.trim())));
  assert.deepEqual(codes, Array(20).fill('vmlet-guest stream-guest'));
  // client-go ends its whole session after a stream error, so the closed port comes last.
  await assert.rejects(httpGet(closed));
  await waitFor('the per-stream error', 30_000, () => (/error forwarding port 1 to pod sandbox [0-9a-f]+: connecting to [0-9.]+:1 in the pod: connect ECONNREFUSED/.test(pf.out()) ? true : undefined));
  pf.child.kill('SIGTERM');
  await exited(pf.child);
});


test('console.raw and the CRI log are written while nobody is attached: the shutdown lines of StopContainer', { timeout: 120_000 }, async () => {
  await d.runtime.StopContainer!({ container_id: containerId, timeout: '60' }, { deadlineMs: 120_000 });
  await waitFor('the shutdown line in the CRI log', 20_000, () => criLines(logPath).find((l) => l.text === 'VMLET-GUEST shutdown'));
  const raw = join(d.stateDir, 'vms', containerId, 'console.raw');
  assert.ok(!existsSync(raw) || readFileSync(raw, 'latin1').includes('VMLET-GUEST shutdown'));
  // Attach and exec to a stopped container are refused up front.
  assert.equal(await grpcCode(d.runtime.Attach!({ container_id: containerId, stdout: true })), 9);
  assert.equal(await grpcCode(d.runtime.Exec!({ container_id: containerId, cmd: ['true'], stdout: true })), 9);
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
