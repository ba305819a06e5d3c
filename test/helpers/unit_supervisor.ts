/**
 * A small supervisor that does what a systemd service unit says, for hosts without systemd as
 * PID 1: ExecStart (Type=simple), stop with KillSignal to the main process only (KillMode=process),
 * SIGKILL after TimeoutStopSec, and Restart=on-failure after RestartSec. Only the keys vmlet's
 * unit uses are understood; any other key in [Service] is refused so the test cannot drift from the unit.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface ServiceUnit {
  execStart: string[];
  killMode: string;
  killSignal: NodeJS.Signals;
  timeoutStopSec: number;
  restart: string;
  restartSec: number;
}

const UNDERSTOOD = new Set(['Type', 'ExecStart', 'KillMode', 'KillSignal', 'TimeoutStopSec', 'Restart', 'RestartSec', 'StandardOutput', 'StandardError', 'SyslogIdentifier', 'LimitNOFILE', 'Environment']);

export function parseServiceUnit(text: string): ServiceUnit & { sections: Record<string, Record<string, string[]>> } {
  const sections: Record<string, Record<string, string[]>> = {};
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section) {
      current = section[1]!;
      sections[current] ??= {};
      continue;
    }
    const eq = line.indexOf('=');
    if (eq < 0) throw new Error(`not a unit line: ${line}`);
    const key = line.slice(0, eq).trim();
    (sections[current]![key] ??= []).push(line.slice(eq + 1).trim());
  }
  const service = sections.Service ?? {};
  for (const key of Object.keys(service)) if (!UNDERSTOOD.has(key)) throw new Error(`the test supervisor does not understand [Service] ${key}`);
  const one = (k: string, dflt: string) => service[k]?.at(-1) ?? dflt;
  if (one('Type', 'simple') !== 'simple') throw new Error('only Type=simple is supervised');
  return {
    sections,
    execStart: one('ExecStart', '').split(/\s+/).filter(Boolean),
    killMode: one('KillMode', 'control-group'),
    killSignal: one('KillSignal', 'SIGTERM') as NodeJS.Signals,
    timeoutStopSec: Number(one('TimeoutStopSec', '90')),
    restart: one('Restart', 'no'),
    restartSec: Number(one('RestartSec', '0.1')),
  };
}

export interface SupervisorEvent {
  at: number;
  event: 'started' | 'exited' | 'stop-signal' | 'stop-kill' | 'restart-scheduled';
  pid?: number;
  code?: number | null;
  signal?: string | null;
}

export class UnitSupervisor {
  child: ChildProcess | undefined;
  events: SupervisorEvent[] = [];
  output = '';
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly unit: ServiceUnit,
    /** The program to run instead of ExecStart's first word (the rest of the line is kept). */
    private readonly program: string[],
    private readonly env: NodeJS.ProcessEnv,
  ) {
    if (unit.killMode !== 'process') throw new Error(`KillMode=${unit.killMode} is not supervised here`);
  }

  start(): void {
    const [, ...args] = this.unit.execStart;
    const child = spawn(this.program[0]!, [...this.program.slice(1), ...args], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d) => (this.output += d));
    child.stderr!.on('data', (d) => (this.output += d));
    this.child = child;
    this.events.push({ at: Date.now(), event: 'started', pid: child.pid });
    child.once('exit', (code, signal) => {
      this.events.push({ at: Date.now(), event: 'exited', pid: child.pid, code, signal });
      // Restart=on-failure: an unclean exit code or a signal other than the stop signal.
      const clean = code === 0 || (this.stopping && signal === this.unit.killSignal);
      if (!this.stopping && !clean && this.unit.restart === 'on-failure') {
        this.events.push({ at: Date.now(), event: 'restart-scheduled' });
        this.restartTimer = setTimeout(() => this.start(), this.unit.restartSec * 1000);
      }
    });
  }

  /** systemctl stop: KillSignal to the main process only, SIGKILL after TimeoutStopSec. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    this.events.push({ at: Date.now(), event: 'stop-signal', pid: child.pid });
    child.kill(this.unit.killSignal);
    const timer = setTimeout(() => {
      this.events.push({ at: Date.now(), event: 'stop-kill', pid: child.pid });
      child.kill('SIGKILL');
    }, this.unit.timeoutStopSec * 1000);
    await exited;
    clearTimeout(timer);
  }

  /** systemctl restart. */
  async restart(): Promise<void> {
    await this.stop();
    this.stopping = false;
    this.start();
  }
}
