import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { focusFor, parseApplicable, quoteMeta, specsFromReport, suiteFailures, verdict, type SpecResult } from '../../../test/conformance/verdict.js';
import { translationConfig, GUEST_IMAGES, NGINX_IMAGES, TINY_IMAGE_GROUPS } from '../../../test/conformance/images.js';
import { parseTranslationConfig, translateImageName } from '../../../src/image/translate.js';
import { parseImageName } from '../../../src/image/reference.js';

const report = JSON.stringify([{
  SuiteDescription: 'CRI validation',
  SpecReports: [
    { LeafNodeType: 'SynchronizedBeforeSuite', State: 'passed' },
    { ContainerHierarchyTexts: ['[k8s.io] Runtime info', 'runtime should support returning runtime info'], LeafNodeText: 'runtime should return version info [Conformance]', LeafNodeType: 'It', State: 'passed', RunTime: 1_500_000_000 },
    { ContainerHierarchyTexts: ['[k8s.io] Image Manager'], LeafNodeText: 'public image with digest should be pulled and removed [Conformance]', LeafNodeType: 'It', State: 'failed', RunTime: 20_000_000, Failure: { Message: 'failed to pull image\nmore detail' } },
    { ContainerHierarchyTexts: ['[k8s.io] Image benchmark'], LeafNodeText: 'listing Image', LeafNodeType: 'It', State: 'skipped', RunTime: 0 },
  ],
}]);

test('specsFromReport: It nodes only, full names as Ginkgo joins them, first line of the failure', () => {
  assert.deepEqual(specsFromReport(report), [
    { name: '[k8s.io] Runtime info runtime should support returning runtime info runtime should return version info [Conformance]', state: 'passed', seconds: 1.5, message: '' },
    { name: '[k8s.io] Image Manager public image with digest should be pulled and removed [Conformance]', state: 'failed', seconds: 0.02, message: 'failed to pull image' },
    { name: '[k8s.io] Image benchmark listing Image', state: 'skipped', seconds: 0, message: '' },
  ]);
  assert.deepEqual(suiteFailures(report), []);
  const broken = JSON.stringify([{ SpecReports: [{ LeafNodeType: 'SynchronizedBeforeSuite', State: 'failed', Failure: { Message: 'cannot connect\nx' } }] }]);
  assert.deepEqual(suiteFailures(broken), ['SynchronizedBeforeSuite: failed: cannot connect']);
  assert.throws(() => specsFromReport('{}'), /not a Ginkgo JSON report/);
});

test('focusFor matches exactly one full name behind the suite description, literally', () => {
  const name = "[k8s.io] Container runtime should support listing stats for three created containers when filter is nil. [Conformance]";
  const re = new RegExp(focusFor(name));
  assert.ok(re.test(`CRI validation ${name}`));
  assert.ok(!re.test(`CRI validation ${name} more`));
  assert.ok(!re.test(`CRI validation ${name.replace('nil.', 'nilX')}`), 'the dot is literal');
  assert.equal(quoteMeta('a.b[c]|(d)*+?{e}^$\\'), 'a\\.b\\[c\\]\\|\\(d\\)\\*\\+\\?\\{e\\}\\^\\$\\\\');
});

test('parseApplicable skips comments and blank lines and refuses a name twice', () => {
  assert.deepEqual(parseApplicable('# c\n\n a \nb\n'), ['a', 'b']);
  assert.throws(() => parseApplicable('a\na\n'), /twice/);
});

const spec = (name: string, state: SpecResult['state'], message = ''): SpecResult => ({ name, state, seconds: 1, message });

test('verdict: only applicable specs count; failed, skipped and missing ones are failures', () => {
  const v = verdict([spec('A', 'passed'), spec('B', 'failed', 'boom'), spec('C', 'skipped'), spec('X', 'passed'), spec('Y', 'failed')], ['A', 'B', 'C', 'D']);
  assert.equal(v.summary, '1 passed, 3 failed');
  assert.equal(v.passed, 1);
  assert.equal(v.failed, 3);
  assert.deepEqual(v.missing, ['D']);
  assert.deepEqual(v.newlyPassing, ['X']);
  assert.match(v.lines.find((l) => l.includes(' B'))!, /FAIL .* B {2}-- boom$/);
  assert.match(v.lines.find((l) => l.endsWith('did not run (not in critest\'s report)'))!, / D /);
  assert.equal(verdict([spec('A', 'passed')], ['A']).summary, '1 passed, 0 failed');
});

test('the translation config maps every name critest pulls; shared tags share a disk, the rest are distinct', () => {
  const yaml = translationConfig('http://127.0.0.1:1/guest.qcow2', 'http://127.0.0.1:1/guest-nginx.qcow2', (i) => `http://127.0.0.1:1/tiny-${i}.qcow2`);
  assert.ok(Array.isArray(parse(yaml).translations));
  const config = parseTranslationConfig(yaml, 'critest.yaml');
  const urlOf = (name: string) => translateImageName([config], parseImageName(name))?.url;
  for (const name of GUEST_IMAGES) assert.equal(urlOf(name), 'http://127.0.0.1:1/guest.qcow2', name);
  for (const name of NGINX_IMAGES) assert.equal(urlOf(name), 'http://127.0.0.1:1/guest-nginx.qcow2', name);
  assert.ok(NGINX_IMAGES.includes('registry.k8s.io/e2e-test-images/nginx:1.14-2'), "critest's web server image");
  const urls = TINY_IMAGE_GROUPS.map((group) => new Set(group.map(urlOf)));
  for (const set of urls) assert.equal(set.size, 1, 'one disk per group');
  assert.equal(new Set(urls.map((s) => [...s][0])).size, TINY_IMAGE_GROUPS.length, 'a disk per group');
  // The untagged name is pulled as name:latest.
  assert.equal(urlOf('gcr.io/k8s-staging-cri-tools/test-image-latest:latest'), urlOf('gcr.io/k8s-staging-cri-tools/test-image-latest'));
});
