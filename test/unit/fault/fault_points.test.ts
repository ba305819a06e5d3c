import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FAULT_POINTS, armedFaultPoint, FAULT_POINT_ENV } from '../../../src/fault_points.js';
import { REPO_ROOT } from '../../helpers/daemon.js';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

test('every fault point is placed exactly once in the product, and nothing else is called a fault point', () => {
  const calls = sources(join(REPO_ROOT, 'src')).flatMap((f) => [...readFileSync(f, 'utf8').matchAll(/faultPoint\('([^']+)'\)/g)].map((m) => m[1]!));
  assert.deepEqual([...calls].sort(), [...FAULT_POINTS].sort());
});

test('the armed point comes from the environment; an unknown name is refused, none set means none armed', () => {
  assert.equal(armedFaultPoint({}), undefined);
  assert.equal(armedFaultPoint({ [FAULT_POINT_ENV]: '' }), undefined);
  assert.equal(armedFaultPoint({ [FAULT_POINT_ENV]: 'container.start.after-domain-start' }), 'container.start.after-domain-start');
  assert.throws(() => armedFaultPoint({ [FAULT_POINT_ENV]: 'container.start.after-domian-start' }), /names no fault point/);
});
