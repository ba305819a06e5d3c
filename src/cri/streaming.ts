/**
 * ExecSync, Exec, Attach and PortForward. ExecSync runs through the guest agent and answers
 * directly; the other three check the request and answer with a one-time URL on vmlet's
 * streaming server (src/streaming/server.ts), where the client then speaks the protocol.
 */
import type { ExecSyncRequest__Output } from './generated/runtime/v1/ExecSyncRequest.js';
import type { ExecSyncResponse } from './generated/runtime/v1/ExecSyncResponse.js';
import type { ExecRequest__Output } from './generated/runtime/v1/ExecRequest.js';
import type { AttachRequest__Output } from './generated/runtime/v1/AttachRequest.js';
import type { PortForwardRequest__Output } from './generated/runtime/v1/PortForwardRequest.js';
import { InvalidArgumentError } from '../errors.js';
import type { HandlerMap, CallContext } from './rpc.js';
import { checkIdOrPrefix } from './validate.js';
import type { StreamRequest } from '../streaming/types.js';
import type { VmStreams } from '../container/vm_streams.js';

/** A day, as StopContainer's bound: anything longer is a malformed request. */
const MAX_EXEC_TIMEOUT_S = 86_400n;

export interface StreamUrls {
  urlFor(request: StreamRequest): string;
}

function checkIo(req: { stdin?: boolean; stdout?: boolean; stderr?: boolean; tty?: boolean }): void {
  if (!req.stdin && !req.stdout && !req.stderr) throw new InvalidArgumentError('one of stdin, stdout, or stderr must be set');
  if (req.tty && req.stderr) throw new InvalidArgumentError('tty and stderr cannot both be true');
}

function checkCmd(cmd: string[] | undefined): string[] {
  if (!cmd || cmd.length === 0 || !cmd[0]) throw new InvalidArgumentError('cmd must name a program');
  return cmd;
}

export function streamingHandlers(streams: VmStreams, server: StreamUrls, sandboxIdOf: (idOrPrefix: string) => string): HandlerMap {
  return {
    async ExecSync(req: ExecSyncRequest__Output, ctx: CallContext): Promise<ExecSyncResponse> {
      const timeout = BigInt(req.timeout ?? '0');
      if (timeout < 0n || timeout > MAX_EXEC_TIMEOUT_S) throw new InvalidArgumentError(`timeout ${timeout} is out of range (0..${MAX_EXEC_TIMEOUT_S} s)`);
      const result = await streams.execSync(checkIdOrPrefix(req.container_id, 'container_id'), checkCmd(req.cmd), Number(timeout) * 1000, ctx.signal);
      return { stdout: result.stdout, stderr: result.stderr, exit_code: result.exitCode };
    },

    async Exec(req: ExecRequest__Output): Promise<object> {
      checkIo(req);
      const cmd = checkCmd(req.cmd);
      const r = streams.running(checkIdOrPrefix(req.container_id, 'container_id'));
      return {
        url: server.urlFor({ kind: 'exec', containerId: r.id, cmd, tty: !!req.tty, stdin: !!req.stdin, stdout: !!req.stdout, stderr: !!req.stderr }),
      };
    },

    async Attach(req: AttachRequest__Output): Promise<object> {
      checkIo(req);
      const r = streams.running(checkIdOrPrefix(req.container_id, 'container_id'));
      return { url: server.urlFor({ kind: 'attach', containerId: r.id, tty: !!req.tty, stdin: !!req.stdin, stdout: !!req.stdout, stderr: !!req.stderr }) };
    },

    async PortForward(req: PortForwardRequest__Output): Promise<object> {
      const sandboxId = sandboxIdOf(checkIdOrPrefix(req.pod_sandbox_id, 'pod_sandbox_id'));
      const ports = (req.port ?? []).map(Number);
      for (const p of ports) if (!Number.isInteger(p) || p < 1 || p > 65535) throw new InvalidArgumentError(`port ${p} is out of range (1..65535)`);
      return { url: server.urlFor({ kind: 'portforward', sandboxId, ports }) };
    },
  };
}
