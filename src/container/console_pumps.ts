/** One console → CRI log pump per running container (see src/console/log_pump.ts). */
import { join } from 'node:path';
import { ConsoleLogPump } from '../console/log_pump.js';
import { FailedPreconditionError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ContainerRecord } from './records.js';
import { CONSOLE_RAW, CONSOLE_STATE } from './layout.js';

/** The console → CRI log side, as the container verbs see it. */
export interface ConsoleLogs {
  start(record: ContainerRecord): Promise<void>;
  stop(containerId: string): Promise<void>;
  reopen(containerId: string): Promise<void>;
}

export class ConsolePumps implements ConsoleLogs {
  private readonly pumps = new Map<string, ConsoleLogPump>();

  constructor(private readonly logger: Logger) {}

  async start(r: ContainerRecord): Promise<void> {
    // kubelet asked for no log (no log_directory or log_path): QEMU's raw file is all there is.
    if (this.pumps.has(r.id) || !r.logPath) return;
    const pump = new ConsoleLogPump({
      rawPath: join(r.dir, CONSOLE_RAW),
      logPath: r.logPath,
      statePath: join(r.dir, CONSOLE_STATE),
      logger: this.logger.child({ containerId: r.id }),
    });
    await pump.start();
    this.pumps.set(r.id, pump);
  }

  /** The container ended: drain what is left and write an unfinished last line as P. */
  async stop(containerId: string): Promise<void> {
    const pump = this.pumps.get(containerId);
    if (!pump) return;
    this.pumps.delete(containerId);
    await pump.stop();
  }

  async reopen(containerId: string): Promise<void> {
    const pump = this.pumps.get(containerId);
    if (!pump) throw new FailedPreconditionError(`container ${containerId} has no log being written`);
    await pump.reopen();
  }

  /** vmlet is stopping while VMs run on: keep unfinished lines for the next vmlet to continue. */
  async shutdown(): Promise<void> {
    const pumps = [...this.pumps.values()];
    this.pumps.clear();
    await Promise.all(pumps.map((p) => p.stop({ keepPartial: true })));
  }
}
