/**
 * Exec, ExecSync, Attach and PortForward for VM containers: what the streaming server
 * (src/streaming/) and the CRI handlers (src/cri/streaming.ts) call.
 *
 * Exec goes through the QEMU guest agent (src/qmp/guest_agent.ts), which runs a program with
 * captured output and stdin given up front, without a pty. Hence:
 * - stdin is read to its end first and then handed to the program (an interactive program sees
 *   all its input at once); with `tty`, a ^D (0x04) in the input also ends it, as a terminal's
 *   line discipline would;
 * - output arrives when the program has exited; with `tty`, stderr is merged into stdout (a
 *   terminal has one output stream) and \n becomes \r\n; there is no pty, so programs that need
 *   one (shells' job control, editors) do not behave as on a terminal, and resize is not applied.
 * Attach is the VM's serial console (src/console/attach_hub.ts). PortForward connects to the
 * VM's pod IP from a socket netd made inside the pod netns.
 */
import type { Duplex, Readable } from 'node:stream';
import type net from 'node:net';
import { FailedPreconditionError, InvalidArgumentError, errorText } from '../errors.js';
import type { Logger } from '../log.js';
import { GuestAgent, type AgentChannel } from '../qmp/guest_agent.js';
import { ConsoleAttachHub } from '../console/attach_hub.js';
import type { ExecOutcome, SessionIo, StreamingRuntime } from '../streaming/types.js';
import type { ContainerRecord } from './records.js';
import { PORT_FORWARD_SOURCE_IP } from '../network/port_forward_source.js';
import { consoleSocketPath } from './vm_sockets.js';

/** stdin is buffered in memory before the agent gets it; the agent's JSON limits are far lower anyway. */
const MAX_STDIN_BYTES = 8 * 1024 * 1024;
const CONNECT_TIMEOUT_MS = 10_000;

export interface ExecSyncResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

export interface VmStreamsDeps {
  qmpDir: string;
  container(idOrPrefix: string): ContainerRecord;
  /** The sandbox's netns path and pod IPs; throws NotFound for an unknown id. */
  sandbox(idOrPrefix: string): { id: string; netnsPath?: string; podIps?: string[]; ready: boolean };
  tcpSocketInNetns(netnsPath: string): Promise<net.Socket>;
  /** The guest agent of the container's VM (through libvirt, which owns the agent channel). */
  agentChannel(r: ContainerRecord): AgentChannel;
  /**
   * How long an exec waits for the guest's agent to answer (a guest just started has not run it
   * yet) when the request sets no timeout of its own; then FAILED_PRECONDITION.
   */
  agentWaitMs: number;
  logger: Logger;
}

export class VmStreams implements StreamingRuntime {
  private readonly agents = new Map<string, GuestAgent>();
  private readonly hubs = new Map<string, ConsoleAttachHub>();

  constructor(private readonly deps: VmStreamsDeps) {}

  /** The container, which must be running. */
  running(containerId: string): ContainerRecord {
    const r = this.deps.container(containerId);
    if (r.state !== 'RUNNING') throw new FailedPreconditionError(`container ${r.id} is not running (${r.state})`);
    return r;
  }

  private agent(r: ContainerRecord): GuestAgent {
    this.prune();
    let agent = this.agents.get(r.id);
    if (!agent) {
      agent = new GuestAgent(this.deps.agentChannel(r));
      this.agents.set(r.id, agent);
    }
    return agent;
  }

  /** Drops agents and hubs of containers that are gone. */
  private prune(): void {
    for (const id of new Set([...this.agents.keys(), ...this.hubs.keys()])) {
      try {
        this.deps.container(id);
      } catch {
        this.forget(id);
      }
    }
  }

  /** Forgets the agent connection and console hub of a container that stopped or went away. */
  forget(containerId: string): void {
    this.agents.get(containerId)?.close();
    this.agents.delete(containerId);
    this.hubs.delete(containerId);
  }

  /** waitReady, logging how long a booting guest kept the exec waiting. */
  private async waitForAgent(r: ContainerRecord, agent: GuestAgent, boundMs: number, signal?: AbortSignal): Promise<void> {
    const started = Date.now();
    try {
      await agent.waitReady(boundMs, signal);
    } catch (err) {
      this.deps.logger.info({ containerId: r.id, waitedMs: Date.now() - started, err: errorText(err) }, 'exec: no guest agent answered');
      throw err;
    }
    const waitedMs = Date.now() - started;
    if (waitedMs >= 1000) this.deps.logger.info({ containerId: r.id, waitedMs }, 'exec: the guest agent answered after a wait');
  }

  async execSync(containerId: string, cmd: string[], timeoutMs: number, signal?: AbortSignal): Promise<ExecSyncResult> {
    checkCommand(cmd);
    const r = this.running(containerId);
    const agent = this.agent(r);
    const started = Date.now();
    // The timeout bounds the whole call (a probe's timeoutSeconds): waiting for the agent included.
    await this.waitForAgent(r, agent, timeoutMs > 0 ? timeoutMs : this.deps.agentWaitMs, signal);
    const left = timeoutMs > 0 ? Math.max(1, timeoutMs - (Date.now() - started)) : 0;
    const result = await agent.exec({ argv: cmd, ...(left > 0 ? { timeoutMs: left } : {}), ...(signal ? { signal } : {}) });
    return { stdout: result.stdout, stderr: result.stderr, exitCode: result.exitCode };
  }

  async exec(containerId: string, cmd: string[], io: SessionIo): Promise<ExecOutcome> {
    checkCommand(cmd);
    const r = this.running(containerId);
    const agent = this.agent(r);
    // Waits for the agent of a guest that is still booting; a guest without one fails after the
    // bound, not after the client's stdin ended (a terminal's never does).
    await this.waitForAgent(r, agent, this.deps.agentWaitMs, io.signal);
    const input = io.stdin ? await readInput(io.stdin, io.tty, io.signal) : undefined;
    const result = await agent.exec({ argv: cmd, signal: io.signal, ...(input !== undefined ? { input } : {}) });
    if (io.tty) {
      const merged = Buffer.concat([result.stdout, result.stderr]);
      if (io.stdout) await write(io.stdout, Buffer.from(merged.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1'));
    } else {
      if (io.stdout && result.stdout.length) await write(io.stdout, result.stdout);
      if (io.stderr && result.stderr.length) await write(io.stderr, result.stderr);
    }
    return { exitCode: result.exitCode };
  }

  async attach(containerId: string, io: SessionIo): Promise<void> {
    const r = this.running(containerId);
    this.prune();
    let hub = this.hubs.get(r.id);
    if (!hub) {
      hub = new ConsoleAttachHub(consoleSocketPath(this.deps.qmpDir, r.id));
      this.hubs.set(r.id, hub);
    }
    // The console is one terminal: without a tty the guest's output still goes to stdout.
    const out = io.stdout ?? io.stderr;
    await hub.attach({ ...(io.stdin ? { stdin: io.stdin } : {}), ...(out ? { stdout: out } : {}), signal: io.signal });
  }

  async portForward(sandboxId: string, port: number, signal: AbortSignal): Promise<Duplex> {
    const sb = this.deps.sandbox(sandboxId);
    if (!sb.ready || !sb.netnsPath) throw new FailedPreconditionError(`pod sandbox ${sb.id} is not ready`);
    const vmIp = sb.podIps?.find((ip) => /^[0-9.]+$/.test(ip));
    if (!vmIp) throw new FailedPreconditionError(`pod sandbox ${sb.id} has no IPv4 pod IP to forward to`);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`port ${port} is out of range`);
    const socket = await this.deps.tcpSocketInNetns(sb.netnsPath);
    return new Promise<Duplex>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new FailedPreconditionError(`connecting to ${vmIp}:${port} timed out after ${CONNECT_TIMEOUT_MS} ms`));
      }, CONNECT_TIMEOUT_MS);
      const onAbort = () => socket.destroy();
      signal.addEventListener('abort', onAbort, { once: true });
      socket.once('error', (err) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        reject(new FailedPreconditionError(`connecting to ${vmIp}:${port} in the pod: ${errorText(err)}`));
      });
      socket.connect({ port, host: vmIp, localAddress: PORT_FORWARD_SOURCE_IP }, () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(socket);
      });
    });
  }
}

function checkCommand(cmd: string[]): void {
  if (!Array.isArray(cmd) || cmd.length === 0 || !cmd[0]) throw new InvalidArgumentError('cmd must name a program');
  if (cmd.some((a) => typeof a !== 'string' || a.includes('\0'))) throw new InvalidArgumentError('cmd arguments must be strings without NUL');
}

/** stdin to its end (or a ^D with a tty), bounded. */
function readInput(stdin: Readable, tty: boolean, signal: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const done = (err?: Error) => {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      signal.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks));
    };
    const onData = (d: Buffer) => {
      const eot = tty ? d.indexOf(0x04) : -1;
      const part = eot >= 0 ? d.subarray(0, eot) : d;
      chunks.push(part);
      total += part.length;
      if (total > MAX_STDIN_BYTES) return done(new InvalidArgumentError(`stdin over ${MAX_STDIN_BYTES} bytes: the guest agent takes stdin in one piece`));
      if (eot >= 0) done();
    };
    const onEnd = () => done();
    const onAbort = () => done(new Error('client went away'));
    stdin.on('data', onData);
    stdin.on('end', onEnd);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function write(w: NodeJS.WritableStream, data: Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (!w.write(data)) w.once('drain', resolve);
    else resolve();
  });
}
