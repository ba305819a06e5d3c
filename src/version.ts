import { readFileSync } from 'node:fs';

/** vmlet's version, from package.json two levels above this module (src/ or dist/). */
export const VMLET_VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

export const CRI_API_VERSION = 'v1';
export const RUNTIME_NAME = 'vmlet';
