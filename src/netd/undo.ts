/** Undo lists: each step that creates something pushes its undo; a failure runs them in reverse. */
import { errorText } from '../errors.js';
import type { Logger } from '../log.js';

export type Undo = { what: string; run: () => Promise<void> };

/** Runs `undos` newest first; a failing one is logged and the rest still run. */
export async function runUndos(undos: Undo[], logger: Logger, sandboxId: string, cause: unknown): Promise<void> {
  for (const undo of undos.reverse()) {
    try {
      await undo.run();
    } catch (err) {
      // The record stays (its undo runs last); teardown, which serve calls next, retries.
      logger.error({ err, sandboxId, step: undo.what, cause: errorText(cause) }, 'rollback step failed');
    }
  }
}
