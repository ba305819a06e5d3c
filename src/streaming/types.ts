/** What the streaming server asks of the runtime, and what a session hands it. */
import type { EventEmitter } from 'node:events';
import type { Duplex, Readable, Writable } from 'node:stream';

/** A terminal size sent by the client (kubelet's remotecommand.TerminalSize). */
export interface TerminalSize {
  width: number;
  height: number;
}

/** The client's streams of one exec or attach session; absent = not requested. */
export interface SessionIo {
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  tty: boolean;
  /** Emits 'resize' with a TerminalSize whenever the client's terminal changes (tty only). */
  resize?: EventEmitter;
  /** Aborted when the client goes away. */
  signal: AbortSignal;
}

export interface ExecOutcome {
  exitCode: number;
}

/** The runtime behind the streaming server (src/cri/streaming.ts builds it from the container side). */
export interface StreamingRuntime {
  exec(containerId: string, cmd: string[], io: SessionIo): Promise<ExecOutcome>;
  attach(containerId: string, io: SessionIo): Promise<void>;
  /** A TCP connection to `port` as the pod sees it. */
  portForward(sandboxId: string, port: number, signal: AbortSignal): Promise<Duplex>;
}

/** A CRI request kept under a one-time token until the client comes for it. */
export type StreamRequest =
  | { kind: 'exec'; containerId: string; cmd: string[]; tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean }
  | { kind: 'attach'; containerId: string; tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean }
  | { kind: 'portforward'; sandboxId: string; ports: number[] };
