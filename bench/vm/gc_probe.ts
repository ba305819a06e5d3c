/**
 * Preload (`node --expose-gc --import gc_probe`) for the scale phase's daemon: serve, and netd,
 * which serve forks with its own execArgv. On SIGUSR2 the process runs a full garbage collection
 * and writes its memory figures to `$VMLET_BENCH_GC_DIR/<pid>.json`, so the bench can read what a
 * process holds, not what it has not collected yet. It announces itself with `<pid>.ready`: the
 * bench signals only processes that did (SIGUSR2's default action ends a process). Nothing in
 * src/ changes; without the variable or without --expose-gc it does nothing.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GC_DIR_ENV, type GcProbeReading } from './gc_probe_record.js';

const dir = process.env[GC_DIR_ENV];
const gc = (globalThis as { gc?: () => void }).gc;
if (dir !== undefined && typeof gc === 'function') {
  process.on('SIGUSR2', () => {
    gc();
    // A second pass frees what the first one's finalizers released.
    gc();
    const reading: GcProbeReading = { pid: process.pid, at: Date.now(), ...process.memoryUsage() };
    writeFileSync(join(dir, `${process.pid}.json`), JSON.stringify(reading));
  });
  writeFileSync(join(dir, `${process.pid}.ready`), '');
}
