import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const goldenRoot = join(dirname(fileURLToPath(import.meta.url)), '..', 'golden');

/**
 * Compares `actual` with test/golden/<name>. With UPDATE_GOLDEN=1 the file is (re)written instead,
 * so a reviewer sees every change to generated output as a diff of the golden file.
 */
export function assertGolden(name: string, actual: string | Buffer): void {
  const path = join(goldenRoot, name);
  if (process.env.UPDATE_GOLDEN === '1') {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, actual);
    return;
  }
  let expected: Buffer;
  try {
    expected = readFileSync(path);
  } catch {
    assert.fail(`golden file ${path} is missing; run with UPDATE_GOLDEN=1 to create it, then review it`);
  }
  if (typeof actual === 'string') assert.equal(actual, expected.toString('utf8'), `output differs from ${name}`);
  else assert.deepEqual(actual, expected, `output differs from ${name}`);
}
