import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { errorText } from '../errors.js';
import { readTextFileBounded } from '../documents/bounded.js';
import { MAX_TRANSLATION_CONFIG_BYTES, parseTranslationConfig, type TranslationConfig } from './translate.js';

export interface TranslationSnapshot {
  /** Valid configs, in file name order (which is their precedence). */
  configs: TranslationConfig[];
  /** One line per file that could not be used, for error messages. */
  problems: string[];
}

const CONFIG_FILE_RE = /\.(ya?ml|json)$/;

/**
 * The translation config directory, re-read whenever it changes. Each lookup lists the directory
 * and stats its config files (following symlinks, so a Kubernetes ConfigMap volume's `..data`
 * swap is seen through the new inode); only when that signature differs are the files parsed
 * again. That costs one readdir plus a stat per file per pull, needs no watcher that could miss
 * events or leak a handle, and works when the directory does not exist yet.
 */
export class TranslationDirectory {
  private signature: string | undefined;
  private snapshot: TranslationSnapshot = { configs: [], problems: [] };
  private loading: Promise<TranslationSnapshot> | undefined;

  constructor(
    readonly dir: string,
    private readonly log: Logger,
  ) {}

  /** The current configs; re-reads the directory when its contents changed since the last call. */
  current(): Promise<TranslationSnapshot> {
    // Concurrent callers share one scan.
    this.loading ??= this.refresh().finally(() => {
      this.loading = undefined;
    });
    return this.loading;
  }

  private async refresh(): Promise<TranslationSnapshot> {
    const files = await this.listConfigFiles();
    const signature = files.map((f) => `${f.name}\0${f.ino}\0${f.size}\0${f.mtimeNs}`).join('\n');
    if (signature === this.signature) return this.snapshot;

    const configs: TranslationConfig[] = [];
    const problems: string[] = [];
    for (const f of files) {
      try {
        // Read only up to the limit: a huge or growing file is refused, not loaded.
        const text = await readTextFileBounded(join(this.dir, f.name), `image translation config ${f.name}`, MAX_TRANSLATION_CONFIG_BYTES);
        configs.push(parseTranslationConfig(text, f.name));
      } catch (err) {
        problems.push(`${f.name}: ${errorText(err)}`);
        this.log.warn({ dir: this.dir, file: f.name, err: errorText(err) }, 'ignoring unusable image translation config');
      }
    }
    this.snapshot = { configs, problems };
    this.signature = signature;
    this.log.info(
      { dir: this.dir, files: files.length, rules: configs.reduce((n, c) => n + c.rules.length, 0) },
      'image translations loaded',
    );
    return this.snapshot;
  }

  private async listConfigFiles(): Promise<{ name: string; ino: bigint; size: bigint; mtimeNs: bigint }[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return [];
      throw err;
    }
    names.sort();
    const out: { name: string; ino: bigint; size: bigint; mtimeNs: bigint }[] = [];
    for (const name of names) {
      // Dot files include a ConfigMap's `..data` and editors' swap files.
      if (name.startsWith('.') || !CONFIG_FILE_RE.test(name)) continue;
      try {
        const st = await stat(join(this.dir, name), { bigint: true });
        if (st.isFile()) out.push({ name, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs });
      } catch {
        // Removed between readdir and stat, or a dangling symlink: not a config right now.
      }
    }
    return out;
  }
}
