/**
 * End to end: exec, attach and port-forward on ONE boot of the real cloud-init guest
 * (test-guests/build-debian-cloud.sh: Debian 12, systemd, qemu-guest-agent, sshd), through a real
 * `vmlet serve`, with the real crictl v1.26.1 (client-go's SPDY code) and vmlet's own SPDY client.
 *
 * - ExecSync and crictl exec through the guest's real qemu-ga (via libvirt, which owns the agent
 *   channel): echo, exit codes 0/1/3, stderr, a timeout that kills the process in the guest, stdin,
 *   a program that does not exist, `-t`;
 * - attach: two crictl clients read the getty login prompt the guest prints on its serial console;
 * - port-forward: sshd's banner, a responder started with exec (python3 in the guest), and 20
 *   concurrent streams of 10 MiB each through one SPDY connection, echoed back intact.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { startTestDaemon, grpcCode, type TestDaemon } from '../../helpers/daemon.js';
import { ensureLibvirtd } from '../../helpers/libvirtd.js';
import { waitFor, removeAllAndStop, deleteLink, qemuPids, clearStaleTestSubnet } from '../../helpers/e2e.js';
import { findCriTools } from '../../helpers/cri_tools.js';
import { spdyUpgrade } from '../../helpers/spdy_client.js';
import { buildTestGuest, serveFiles, writeBridgeConflist } from '../../helpers/debian_guest.js';

const CRICTL = join(findCriTools(), 'crictl');
const tag = randomBytes(3).toString('hex');
const bridge = `vsg${tag}`;
const subnet = '198.18.229';
const ECHO_PORT = 8080;
const STREAMS = 20;
const BYTES = 10 * 1024 * 1024;
/** A threaded TCP echo server (python3 is in the guest: cloud-init needs it). */
const ECHO_SERVER = [
  'import socketserver',
  'class H(socketserver.BaseRequestHandler):',
  '    def handle(self):',
  '        while True:',
  '            b = self.request.recv(262144)',
  '            if not b: return',
  '            self.request.sendall(b)',
  'socketserver.ThreadingTCPServer.allow_reuse_address = True',
  'socketserver.ThreadingTCPServer.request_queue_size = 64',
  `socketserver.ThreadingTCPServer(("0.0.0.0", ${ECHO_PORT}), H).serve_forever()`,
].join('\n');

let d: TestDaemon;
let images: { base: string; close: () => void } | undefined;
let sandboxId = '';
let containerId = '';
const timings: Record<string, number> = {};
const children = new Set<ChildProcess>();
const fileStart = Date.now();

before(async () => {
  clearStaleTestSubnet(subnet);
  await ensureLibvirtd();
  images = await serveFiles({ '/debian-cloud.qcow2': buildTestGuest('build-debian-cloud.sh') });
  const imageUrl = `${images.base}/debian-cloud.qcow2`;
  d = await startTestDaemon({ args: ['--kvm', 'off', '--vm-memory', '1Gi'] });
  writeBridgeConflist(d, '10-agent.conflist', { name: `vmlet-sa-${tag}`, bridge, subnet });
  const logDir = join(d.dir, 'pod-logs');
  mkdirSync(logDir, { recursive: true });
  await d.image.PullImage!({ image: { image: imageUrl } }, { deadlineMs: 300_000 });
  const podConfig = { metadata: { name: 'agent', namespace: 'default', uid: `uid-agent-${tag}`, attempt: 0 }, hostname: `agent-${tag}`, log_directory: logDir, linux: {} };
  ({ pod_sandbox_id: sandboxId } = await d.runtime.RunPodSandbox!({ config: podConfig }));
  ({ container_id: containerId } = await d.runtime.CreateContainer!({
    pod_sandbox_id: sandboxId,
    config: { metadata: { name: 'vm' }, image: { image: imageUrl }, log_path: 'vm.log', linux: { resources: { memory_limit_in_bytes: String(1024 ** 3) } } },
    sandbox_config: podConfig,
  }));
  const started = Date.now();
  await d.runtime.StartContainer!({ container_id: containerId }, { deadlineMs: 180_000 });
  // The agent answers once systemd started qemu-guest-agent.service (udev starts it for the port).
  await waitFor('the guest agent', 600_000, () => d.runtime.ExecSync!({ container_id: containerId, cmd: ['true'], timeout: '20' }).then((r) => r, () => new Promise((res) => setTimeout(() => res(undefined), 2000))));
  timings['StartContainer to the first ExecSync'] = Date.now() - started;
});

after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await removeAllAndStop(d);
  images?.close();
  deleteLink(bridge);
  if (d) assert.deepEqual(qemuPids(d.stateDir), []);
  if (sandboxId) assert.deepEqual(readdirSync('/run/netns').filter((n) => n.startsWith(`vmlet-${sandboxId.slice(0, 8)}`)), []);
  timings['whole file'] = Date.now() - fileStart;
  console.log(`# agent guest timings (ms): ${JSON.stringify(timings)}`);
});

async function execSync(cmd: string[], timeoutSeconds = 60): Promise<{ stdout: string; stderr: string; exit_code: number }> {
  const r = await d.runtime.ExecSync!({ container_id: containerId, cmd, timeout: String(timeoutSeconds) }, { deadlineMs: (timeoutSeconds + 30) * 1000 });
  return { stdout: Buffer.from(r.stdout ?? '').toString(), stderr: Buffer.from(r.stderr ?? '').toString(), exit_code: r.exit_code ?? 0 };
}

function crictl(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(CRICTL, ['--runtime-endpoint', `unix://${d.socket}`, ...args], { timeout: opts.timeoutMs ?? 90_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      children.delete(child);
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
    });
    children.add(child);
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}

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

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Connects to 127.0.0.1:port, sends `send` (then half-closes), returns everything read until the end. */
function talk(port: number, send: string | undefined, untilText?: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => s.destroy(new Error(`no answer on ${port}: ${JSON.stringify(text)}`)), 30_000);
    s.on('data', (c) => {
      text += c.toString('latin1');
      if (untilText?.test(text)) s.destroy();
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
    if (send !== undefined) s.end(send);
  });
}

test('ExecSync through the real agent: echo, exit codes 0/1/3 with stderr, a missing program, a timeout that kills in the guest', { timeout: 180_000 }, async () => {
  const t0 = Date.now();
  const echo = await execSync(['echo', 'hello', 'from the agent']);
  timings['ExecSync echo'] = Date.now() - t0;
  assert.deepEqual(echo, { stdout: 'hello from the agent\n', stderr: '', exit_code: 0 });
  for (const code of [0, 1, 3]) {
    const r = await execSync(['sh', '-c', `echo out-${code}; echo err-${code} >&2; exit ${code}`]);
    assert.deepEqual(r, { stdout: `out-${code}\n`, stderr: `err-${code}\n`, exit_code: code });
  }
  timings['ExecSync exit codes 0/1/3'] = Date.now() - t0;
  const missing = await execSync(['/nonexistent/program']);
  assert.equal(missing.exit_code, 127);
  assert.match(missing.stderr, /could not run \/nonexistent\/program/);
  // The hostname is the pod's: the command really ran in this guest.
  assert.equal((await execSync(['hostname'])).stdout.trim(), `agent-${tag}`);

  const marker = `31.${Math.floor(Math.random() * 1000)}`;
  const started = Date.now();
  assert.equal(await grpcCode(execSync(['sleep', marker], 2)), 4 /* DEADLINE_EXCEEDED */);
  const took = Date.now() - started;
  timings['ExecSync timeout 2 s answered after'] = took;
  assert.ok(took >= 2000 && took < 15_000, `timeout answered after ${took} ms`);
  // Anchored: the sh running pgrep has the pattern in its own command line.
  const left = await execSync(['sh', '-c', `pgrep -f '^sleep ${marker}' || true`]);
  assert.equal(left.stdout, '', 'the timed-out process was killed in the guest');
  assert.equal(await grpcCode(d.runtime.ExecSync!({ container_id: containerId, cmd: [] })), 3 /* INVALID_ARGUMENT */);
});

test('crictl exec through the streaming server: -s, stdin with -i, exit code 3, and -it', { timeout: 180_000 }, async () => {
  const sync = await crictl(['exec', '-s', containerId, 'echo', 'hi']);
  // crictl prints the stdout it got, then newlines of its own.
  assert.equal(sync.code, 0, sync.stderr);
  assert.match(sync.stdout, /^hi\n/);
  const t0 = Date.now();
  const piped = await crictl(['exec', '-i', containerId, 'sh', '-c', 'tr a-z A-Z; echo to-stderr >&2'], { input: 'piped through stdin\n' });
  timings['crictl exec -i'] = Date.now() - t0;
  assert.equal(piped.code, 0, piped.stderr);
  assert.equal(piped.stdout, 'PIPED THROUGH STDIN\n');
  assert.match(piped.stderr, /to-stderr/);
  // The code travels in the v4 error stream's status (NonZeroExitCode); crictl 1.26 reports it and exits 1.
  const three = await crictl(['exec', containerId, 'sh', '-c', 'exit 3']);
  assert.equal(three.code, 1);
  assert.match(three.stderr, /command terminated with exit code 3/);
  // -it: the agent has no pty. vmlet reads stdin up to a ^D (crictl's raw terminal passes it on),
  // runs the command, and writes stdout and stderr merged with terminal line ends.
  const tty = await new Promise<string>((resolve) => {
    const child = spawn('script', ['-qec', `${CRICTL} --runtime-endpoint unix://${d.socket} exec -it ${containerId} sh -c 'echo one; echo two >&2'`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    child.stdout!.on('data', (c) => (out += c));
    setTimeout(() => child.stdin!.write('\x04'), 3000);
    child.on('exit', () => resolve(out));
  });
  assert.match(tty, /one\r\n/);
  assert.match(tty, /two\r\n/);
});

test('attach: two crictl clients read the getty login prompt of the serial console', { timeout: 180_000 }, async () => {
  const reader = crictlBackground(['attach', containerId]);
  const writer = crictlBackground(['attach', '-i', containerId]);
  await new Promise((r) => setTimeout(r, 3000));
  // An empty line makes getty print its prompt again.
  writer.child.stdin!.write('\n');
  const prompt = new RegExp(`agent-${tag} login:`);
  await waitFor('the login prompt on the interactive client', 60_000, () => (prompt.test(writer.out()) ? true : undefined));
  await waitFor('the login prompt on the read-only client', 60_000, () => (prompt.test(reader.out()) ? true : undefined));
  writer.child.kill('SIGTERM');
  await exited(writer.child);
  // The reader stays attached after the other client left, and sees the next prompt too.
  const seen = reader.out().length;
  const again = crictlBackground(['attach', '-i', containerId]);
  await new Promise((r) => setTimeout(r, 3000));
  again.child.stdin!.write('\n');
  await waitFor('a prompt on the remaining reader', 60_000, () => (prompt.test(reader.out().slice(seen)) ? true : undefined));
  again.child.kill('SIGTERM');
  reader.child.kill('SIGTERM');
  await Promise.all([exited(again.child), exited(reader.child)]);
});

test('port-forward with crictl: sshd\'s banner and the echo responder started with exec', { timeout: 180_000 }, async () => {
  // The responder runs as a transient systemd unit, so the exec returns at once.
  const unit = await execSync(['systemd-run', '--unit', `vmlet-echo-${tag}`, 'python3', '-c', ECHO_SERVER]);
  assert.equal(unit.exit_code, 0, unit.stderr);
  // Listening before crictl forwards to it: client-go ends the whole session after one stream's error.
  const t0 = Date.now();
  await waitFor('the echo responder listening in the guest', 300_000, () => execSync(['sh', '-c', `ss -Hltn 'sport = :${ECHO_PORT}'`]).then((r) => (r.stdout.includes(`:${ECHO_PORT}`) ? true : undefined)));
  timings['echo responder listening after'] = Date.now() - t0;
  const sshPort = await freePort();
  const echoPort = await freePort();
  const pf = crictlBackground(['port-forward', sandboxId, `${sshPort}:22`, `${echoPort}:${ECHO_PORT}`]);
  await waitFor('crictl listening', 30_000, () => (pf.out().includes(`Forwarding from 127.0.0.1:${echoPort}`) ? true : undefined));
  assert.match(await talk(sshPort, undefined, /\n/), /^SSH-2\.0-OpenSSH_9\.2p1 Debian/);
  assert.equal(await talk(echoPort, `ping-${tag}`), `ping-${tag}`);
  pf.child.kill('SIGTERM');
  await exited(pf.child);
});

test(`port-forward with vmlet's SPDY client: ${STREAMS} concurrent streams of 10 MiB each, echoed by the guest intact`, { timeout: 600_000 }, async () => {
  const { url } = await d.runtime.PortForward!({ pod_sandbox_id: sandboxId, port: [ECHO_PORT] });
  const { status, session } = await spdyUpgrade(url, ['portforward.k8s.io']);
  assert.equal(status, 101);
  const started = Date.now();
  await Promise.all(Array.from({ length: STREAMS }, async (_, i) => {
    const payload = randomBytes(BYTES);
    const error = session!.openStream({ streamtype: ['error'], port: [String(ECHO_PORT)], requestid: [String(i)] }, true);
    const data = session!.openStream({ streamtype: ['data'], port: [String(ECHO_PORT)], requestid: [String(i)] });
    let errText = '';
    error.on('data', (c: Buffer) => (errText += c));
    const hash = createHash('sha256');
    let received = 0;
    const done = new Promise<void>((resolve) => {
      data.on('data', (c: Buffer) => {
        hash.update(c);
        received += c.length;
      });
      data.on('end', () => resolve());
      data.on('close', () => resolve());
    });
    for (let off = 0; off < BYTES; off += 256 * 1024) {
      if (!data.write(payload.subarray(off, off + 256 * 1024))) await new Promise((r) => data.once('drain', r));
    }
    data.end();
    await done;
    assert.equal(errText, '', `stream ${i}`);
    assert.equal(received, BYTES, `stream ${i} length`);
    assert.equal(hash.digest('hex'), createHash('sha256').update(payload).digest('hex'), `stream ${i} content`);
  }));
  timings[`${STREAMS} x 10 MiB echoed through the guest`] = Date.now() - started;
  await session!.close();
});

test('after StopContainer: exec, attach and ExecSync are refused up front', { timeout: 120_000 }, async () => {
  await d.runtime.StopContainer!({ container_id: containerId, timeout: '60' }, { deadlineMs: 120_000 });
  assert.equal(await grpcCode(d.runtime.ExecSync!({ container_id: containerId, cmd: ['true'] })), 9);
  assert.equal(await grpcCode(d.runtime.Exec!({ container_id: containerId, cmd: ['true'], stdout: true })), 9);
  assert.equal(await grpcCode(d.runtime.Attach!({ container_id: containerId, stdout: true })), 9);
});
