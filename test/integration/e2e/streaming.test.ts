/**
 * End to end: exec, attach and port-forward with the real crictl v1.26.1 (kubelet's client-go
 * SPDY code) against a real `vmlet serve`, on ONE busybox test guest (test-guests/README.md): it
 * runs Debian's qemu-guest-agent, started by its /init; its serial console echoes what is typed and
 * prints protocol lines; its httpd answers on 8080.
 *
 * - exec right after StartContainer (as critest and a kubelet probe do) waits for the agent the
 *   guest is still starting, and runs;
 * - ExecSync and crictl exec through the agent: output, exit codes, stderr, stdin, `-t`, a timeout
 *   that kills the process in the guest;
 * - attach, port-forward;
 * - the agent stopped in the guest: exec fails with FAILED_PRECONDITION after the bounded wait
 *   (the ExecSync timeout, or --agent-wait), also with a terminal whose stdin never ends.
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
/** --agent-wait of the daemon: how long exec waits for an agent that is gone, in the last tests. */
const AGENT_WAIT_S = 8;
const timings: Record<string, number> = {};
const fileStart = Date.now();
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
  d = await startTestDaemon({ args: ['--kvm', 'off', '--vm-memory', '256Mi', '--agent-wait', String(AGENT_WAIT_S)] });
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
  // At once, as critest's exec specs and a kubelet exec probe do: the call waits for the agent
  // (its timeout bounds the wait) instead of failing because the guest has not started it yet.
  const started = Date.now();
  const first = await d.runtime.ExecSync!({ container_id: containerId, cmd: ['echo', '-n', 'hello'], timeout: '240' }, { deadlineMs: 300_000 });
  timings['StartContainer to the first ExecSync answer (s)'] = (Date.now() - started) / 1000;
  assert.equal(Buffer.from(first.stdout).toString(), 'hello');
  assert.equal(first.exit_code, 0);
  await waitFor('guest ready', 300_000, () => criLines(logPath).find((l) => l.text === 'VMLET-GUEST ready'));
  assert.ok(criLines(logPath).some((l) => /^VMLET-GUEST agent \/dev\/vport\d+p\d+$/.test(l.text)), 'the guest found the agent port');
});

after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await removeAllAndStop(d);
  imageServer?.close();
  deleteLink(bridge);
  // Nothing of this test's pod is left: no QEMU of this daemon, no netns of the sandbox.
  if (d) assert.deepEqual(qemuPids(d.stateDir), []);
  if (sandboxId) assert.deepEqual(readdirSync('/run/netns').filter((n) => n.startsWith(`vmlet-${sandboxId.slice(0, 8)}`)), []);
  timings['whole file (s)'] = (Date.now() - fileStart) / 1000;
  process.stdout.write(`# timings ${JSON.stringify(timings)}\n`);
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

async function execSync(cmd: string[], timeout: number): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const r = await d.runtime.ExecSync!({ container_id: containerId, cmd, timeout: String(timeout) }, { deadlineMs: (timeout + 60) * 1000 });
  return { stdout: Buffer.from(r.stdout).toString(), stderr: Buffer.from(r.stderr).toString(), exitCode: r.exit_code };
}

/** crictl exec -it under a pty (util-linux script); `input` is typed into it. */
function crictlTty(args: string[], input: string): Promise<{ out: string; ms: number }> {
  const started = Date.now();
  const tty = spawn('script', ['-qec', `${CRICTL} --runtime-endpoint unix://${d.socket} ${args.join(' ')}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(tty);
  let out = '';
  tty.stdout!.on('data', (c) => (out += c));
  // After crictl has put the terminal in raw mode.
  setTimeout(() => tty.stdin!.write(input), 1000);
  return exited(tty).then(() => ({ out, ms: Date.now() - started }));
}

test('exec through the guest agent: ExecSync output, stderr and exit codes, a timeout that kills the process; crictl exec -s, -i with stdin, -it', { timeout: 300_000 }, async () => {
  assert.deepEqual(await execSync(['sh', '-c', 'echo out; echo err >&2; exit 3'], 60), { stdout: 'out\n', stderr: 'err\n', exitCode: 3 });
  assert.equal((await execSync(['false'], 60)).exitCode, 1);
  const missing = await execSync(['no-such-program'], 60);
  assert.equal(missing.exitCode, 127);
  // critest's timeout spec: the sleep times out and is gone from the guest afterwards.
  const started = Date.now();
  assert.equal(await grpcCode(d.runtime.ExecSync!({ container_id: containerId, cmd: ['sleep', '4321'], timeout: '2' })), 4 /* DEADLINE_EXCEEDED */);
  timings['ExecSync sleep with timeout 2 (s)'] = (Date.now() - started) / 1000;
  assert.deepEqual(await execSync(['sh', '-c', 'pgrep sleep || true'], 60), { stdout: '', stderr: '', exitCode: 0 });

  const sync = await crictl(['exec', '-s', containerId, 'echo', 'hi']);
  // crictl prints stdout and stderr (empty) with fmt.Println each.
  assert.deepEqual([sync.code, sync.stdout], [0, 'hi\n\n\n']);
  const piped = await crictl(['exec', '-i', containerId, 'cat'], { input: 'x\ny\n' });
  assert.deepEqual([piped.code, piped.stdout], [0, 'x\ny\n']);
  // The code travels in the v4 error stream's status (NonZeroExitCode); crictl 1.26 reports it and exits 1.
  const failing = await crictl(['exec', containerId, 'sh', '-c', 'exit 3']);
  assert.equal(failing.code, 1);
  assert.match(failing.stderr, /command terminated with exit code 3/);
  // -t: one output, \r\n line ends, as through a pty; ^D ends the terminal's input.
  const tty = await crictlTty(['exec', '-it', containerId, 'sh', '-c', "'echo hello; echo oops >&2'"], '\x04');
  assert.match(tty.out, /hello\r\noops\r\n/);
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


test('the agent stopped in the guest: ExecSync fails with FAILED_PRECONDITION after its timeout, crictl exec -s, -i and -it after --agent-wait', { timeout: 300_000 }, async () => {
  // The agent kills itself (in the background, so this exec still gets its answer); the guest's
  // /init reports the agent's exit on the console.
  assert.equal((await execSync(['sh', '-c', '(sleep 2; kill $(pidof qemu-ga)) </dev/null >/dev/null 2>&1 &'], 60)).exitCode, 0);
  await waitFor('the agent gone', 60_000, () => criLines(logPath).find((l) => /^VMLET-GUEST agent-exited /.test(l.text)));
  let started = Date.now();
  await assert.rejects(
    d.runtime.ExecSync!({ container_id: containerId, cmd: ['echo', 'hi'], timeout: '3' }),
    (err: { code?: number; details?: string }) => err.code === 9 && /no guest agent answers .*\(waited 3 s for it\)/.test(err.details ?? ''),
  );
  const took = Date.now() - started;
  assert.ok(took >= 2900 && took < 8000, `ExecSync took ${took} ms`);
  const sync = await crictl(['exec', '-s', containerId, 'echo', 'hi']);
  assert.notEqual(sync.code, 0);
  assert.match(sync.stderr, new RegExp(`FailedPrecondition desc = no guest agent answers .*waited ${AGENT_WAIT_S} s`));
  assert.ok(sync.ms >= AGENT_WAIT_S * 1000 - 100, `crictl exec -s failed after ${sync.ms} ms`);
  // Through the streaming server (SPDY): the error arrives on the error stream.
  const piped = await crictl(['exec', '-i', containerId, 'cat'], { input: 'x\n' });
  assert.notEqual(piped.code, 0);
  assert.match(piped.stderr, /execing command in container: no guest agent answers/);
  assert.ok(piped.ms < (AGENT_WAIT_S + 10) * 1000, `exec -i took ${piped.ms} ms`);
  // With a terminal whose stdin never ends: no hang, the error after the bounded wait.
  started = Date.now();
  const tty = await crictlTty(['exec', '-it', containerId, 'sh'], '');
  assert.match(tty.out, /no guest agent answers/);
  assert.ok(tty.ms < (AGENT_WAIT_S + 10) * 1000, `exec -it took ${tty.ms} ms`);
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
