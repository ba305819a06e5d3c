/** Settings kubelet pushes at run time (UpdateRuntimeConfig), persisted across restarts. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic_file.js';

export interface RuntimeSettingsData {
  podCidr: string;
}

export class RuntimeSettings {
  private data: RuntimeSettingsData = { podCidr: '' };
  private readonly path: string;

  constructor(stateDir: string) {
    this.path = join(stateDir, 'runtime-settings.json');
  }

  async load(): Promise<void> {
    try {
      this.data = { ...this.data, ...(JSON.parse(await readFile(this.path, 'utf8')) as Partial<RuntimeSettingsData>) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  current(): RuntimeSettingsData {
    return { ...this.data };
  }

  async setPodCidr(podCidr: string): Promise<void> {
    if (podCidr === this.data.podCidr) return;
    await writeFileAtomic(this.path, JSON.stringify({ ...this.data, podCidr }));
    this.data = { ...this.data, podCidr };
  }
}
