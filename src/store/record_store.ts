/**
 * A directory of JSON records, one file per record, mirrored in memory.
 * Reads (list/get) are served from memory; every change is written atomically first, so the
 * directory is always a readable picture of the last completed change, even after a crash.
 */
import { readdir, readFile, unlink, rename, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic, dirChanged, TEMP_PREFIX } from './atomic_file.js';
import type { SyncBehind } from './sync_behind.js';
import type { Logger } from '../log.js';

/** Record ids become file names: only these characters, so no id can escape the directory. */
const ID_PATTERN = /^[a-z0-9]{1,128}$/;

export class RecordStore<T extends { id: string }> {
  private readonly records = new Map<string, T>();

  /** With `syncBehind`, changes resolve once visible and reach the disk right after (see SyncBehind). */
  constructor(
    private readonly dir: string,
    private readonly logger: Logger,
    private readonly syncBehind?: SyncBehind,
  ) {}

  /** Loads every record; removes temp files a crash left; sets aside files that do not parse. */
  async load(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.dir)) {
      const path = join(this.dir, name);
      if (name.startsWith(TEMP_PREFIX)) {
        await unlink(path).catch(() => {});
        continue;
      }
      if (!name.endsWith('.json')) continue;
      const id = name.slice(0, -'.json'.length);
      try {
        const record = JSON.parse(await readFile(path, 'utf8')) as T;
        if (record.id !== id) throw new Error(`id ${JSON.stringify(record.id)} does not match the file name`);
        this.records.set(id, record);
      } catch (err) {
        // Atomic writes make this unreachable for vmlet's own files; keep a hand-edited one for a human.
        this.logger.error({ err, path }, 'unreadable record set aside');
        await rename(path, `${path}.corrupt`).catch(() => {});
      }
    }
  }

  get(id: string): T | undefined {
    return this.records.get(id);
  }

  ids(): IterableIterator<string> {
    return this.records.keys();
  }

  values(): IterableIterator<T> {
    return this.records.values();
  }

  get size(): number {
    return this.records.size;
  }

  async put(record: T): Promise<void> {
    assertId(record.id);
    await writeFileAtomic(this.path(record.id), JSON.stringify(record), { syncBehind: this.syncBehind });
    this.records.set(record.id, record);
  }

  async delete(id: string): Promise<void> {
    assertId(id);
    try {
      await unlink(this.path(id));
      await dirChanged(this.dir, this.syncBehind);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    this.records.delete(id);
  }

  private path(id: string): string {
    return join(this.dir, `${id}.json`);
  }
}

export function assertId(id: string): void {
  if (!ID_PATTERN.test(id)) throw new Error(`invalid record id ${JSON.stringify(id)}`);
}
