import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FAULT_POINTS, FAULT_DIR_ENV, armedFaultPoints } from '../../../src/fault_points.js';
import { REPO_ROOT } from '../../helpers/daemon.js';

const dir = mkdtempSync(join(tmpdir(), 'vmlet-faultdir-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function sources(root: string): string[] {
  return readdirSync(root).flatMap((name) => {
    const path = join(root, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

test('every fault point is placed exactly once in the product, and nothing else is called a fault point', () => {
  const calls = sources(join(REPO_ROOT, 'src')).flatMap((f) => [...readFileSync(f, 'utf8').matchAll(/faultPoint\('([^']+)'\)/g)].map((m) => m[1]!));
  assert.deepEqual([...calls].sort(), [...FAULT_POINTS].sort());
});

test('armed points are the files of the fault dir; none without the variable; a file naming no point is refused', () => {
  assert.equal(armedFaultPoints({}), undefined);
  assert.deepEqual(armedFaultPoints({ [FAULT_DIR_ENV]: dir }), { dir, armed: [] });
  writeFileSync(join(dir, 'container.start.after-domain-start'), '');
  assert.deepEqual(armedFaultPoints({ [FAULT_DIR_ENV]: dir })?.armed, ['container.start.after-domain-start']);
  writeFileSync(join(dir, 'container.start.after-domian-start'), '');
  assert.throws(() => armedFaultPoints({ [FAULT_DIR_ENV]: dir }), /"container\.start\.after-domian-start": no such fault point/);
});
