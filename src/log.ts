import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/** One JSON logger per process; children carry the component name. */
export function createLogger(level: LevelWithSilent, name = 'vmlet'): Logger {
  return pino({ name, level, base: { pid: process.pid } });
}

/** A logger that drops everything, for unit tests and library callers that pass none. */
export const silentLogger: Logger = pino({ level: 'silent' });
