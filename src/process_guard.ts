/**
 * What `vmlet serve` and `vmlet netd` do with an error no caller handled, so that one bad call
 * cannot end the runtime (or the network service) of every pod on the node.
 *
 * - An unhandled promise rejection is logged and serving goes on. A rejection nobody awaited is an
 *   operation whose caller already gave up on it; it changes no state by being unobserved, and
 *   Node's default (exit) would turn it into an outage for every pod.
 * - An uncaught exception (a throw from a timer, an event handler or a stream callback) is logged
 *   and serving goes on too: vmlet's state lives in its records on disk, libvirt and netd, which
 *   start-up reconciles, so exiting would restore nothing that continuing keeps broken. A handler
 *   that keeps throwing, though, means something is broken for good: more than
 *   `maxUncaughtPerMinute` in a minute ends the process (exit code 70, EX_SOFTWARE) so that its
 *   supervisor restarts it.
 * Stack and heap exhaustion inside V8 are not catchable at all; bounded parsing
 * (src/documents/bounded.ts) keeps user input from causing them.
 */
import type { Logger } from './log.js';

export interface GuardedProcess {
  on(event: 'unhandledRejection', listener: (reason: unknown) => void): unknown;
  on(event: 'uncaughtException', listener: (err: Error) => void): unknown;
}

export interface ProcessGuardOptions {
  maxUncaughtPerMinute?: number;
  /** Ends the process (process.exit in production). */
  exit: (code: number) => void;
  now?: () => number;
}

export const EXIT_TOO_MANY_UNCAUGHT = 70;

export function installProcessGuards(proc: GuardedProcess, logger: Logger, options: ProcessGuardOptions): void {
  const max = options.maxUncaughtPerMinute ?? 10;
  const now = options.now ?? Date.now;
  let recent: number[] = [];
  proc.on('unhandledRejection', (reason) => {
    logger.error({ err: reason }, 'unhandled promise rejection (serving on)');
  });
  proc.on('uncaughtException', (err) => {
    const t = now();
    recent = recent.filter((at) => t - at < 60_000);
    recent.push(t);
    if (recent.length > max) {
      logger.fatal({ err, count: recent.length }, `more than ${max} uncaught exceptions in a minute; exiting`);
      options.exit(EXIT_TOO_MANY_UNCAUGHT);
      return;
    }
    logger.error({ err }, 'uncaught exception (serving on)');
  });
}
