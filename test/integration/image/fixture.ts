/** Per-test image store with its own temp dirs, removed (and checked for leftovers) afterwards. */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { TestContext } from 'node:test';
import { ImageStore, type ImageStoreOptions } from '../../../src/image/store.js';
import type { Logger } from '../../../src/log.js';

export interface StoreFixture {
  store: ImageStore;
  root: string;
  imageDir: string;
  translationsDir: string;
  logs: Record<string, unknown>[];
  /** Writes a translation config file (creating the directory). */
  writeTranslation(file: string, yaml: string): Promise<void>;
  blobNames(): Promise<string[]>;
  tmpNames(): Promise<string[]>;
  /** A fresh store on the same directories (the old one is closed first). */
  reopen(): Promise<ImageStore>;
}

export function captureLogger(logs: Record<string, unknown>[]): Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  return pino({ level: 'debug' }, sink);
}

export async function makeStore(
  t: TestContext,
  opts: Partial<ImageStoreOptions> & { createTranslationsDir?: boolean } = {},
): Promise<StoreFixture> {
  const root = await mkdtemp(join(tmpdir(), 'vmlet-image-test-'));
  const imageDir = join(root, 'images');
  const translationsDir = join(root, 'translations');
  if (opts.createTranslationsDir !== false) await mkdir(translationsDir);
  const logs: Record<string, unknown>[] = [];
  const make = (): ImageStore =>
    new ImageStore({ imageDir, translationsDir, logger: captureLogger(logs), stallTimeoutMs: 10_000, ...opts });
  let store = make();
  const fixture: StoreFixture = {
    store,
    root,
    imageDir,
    translationsDir,
    logs,
    writeTranslation: async (file, yaml) => {
      await mkdir(translationsDir, { recursive: true });
      await writeFile(join(translationsDir, file), yaml);
    },
    blobNames: async () => (await readdir(join(imageDir, 'blobs', 'sha256'))).sort(),
    tmpNames: async () => readdir(join(imageDir, 'tmp')),
    reopen: async () => {
      await store.close();
      store = make();
      fixture.store = store;
      await store.init();
      return store;
    },
  };
  t.after(async () => {
    try {
      await fixture.store.close();
      // Whatever happened in the test, no download may be left half-written.
      assert.deepEqual(await fixture.tmpNames().catch(() => []), [], 'temp files left behind');
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
  await store.init();
  return fixture;
}
