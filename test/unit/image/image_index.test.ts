/**
 * ImageIndex without a disk: a tag moves from image to image, a removal by tag / by digest / by id
 * takes off what it names, images left without names are dropped, lookups by manifest digest and
 * by content digest, and a snapshot puts everything back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ImageIndex, namesOf } from '../../../src/image/image_index.js';
import { parseImageName, parseImageRef } from '../../../src/image/reference.js';
import type { StoredImage } from '../../../src/image/types.js';

const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;
const MANIFEST = `sha256:${'c'.repeat(64)}`;

function image(id: string): StoredImage {
  return { id, repoTags: [], repoDigests: [], size: 1n, virtualSize: 2n, format: 'qcow2', sourceUrl: '', pulledAtNs: 0n };
}

function indexOf(...ids: string[]): ImageIndex {
  const index = new ImageIndex('/nonexistent');
  for (const id of ids) index.keep(image(id));
  return index;
}

test('namesOf: a tag (latest when none) and the digest of a pinned name', () => {
  assert.deepEqual(namesOf(parseImageName('example.com/vm')), { tag: 'example.com/vm:latest' });
  assert.deepEqual(namesOf(parseImageName(`example.com/vm@${A}`)), { digestRef: `example.com/vm@${A}` });
});

test('a tag moves to the image that is pulled under it; the other is reported touched', () => {
  const index = indexOf(A, B);
  assert.deepEqual([...index.name(A, { tag: 'r/vm:1' })], [A]);
  assert.deepEqual([...index.name(B, { tag: 'r/vm:1', digestRef: `r/vm@${MANIFEST}` })].sort(), [A, B]);
  assert.deepEqual(index.get(A)!.repoTags, []);
  assert.deepEqual(index.get(B)!.repoTags, ['r/vm:1']);
  assert.equal(index.lookup(parseImageRef('r/vm:1'))?.id, B);
  assert.equal(index.byManifest(MANIFEST)?.id, B, 'a registry image by its manifest digest');
  assert.equal(index.lookup(parseImageRef(`r/vm@${MANIFEST}`))?.id, B);
  assert.equal(index.lookup(parseImageRef(`r/vm@${B}`))?.id, B, 'by content digest: the repo names it');
  assert.equal(index.lookup(parseImageRef(`other/vm@${B}`)), undefined, 'a repo that does not name it');
  assert.deepEqual(index.dropUnnamed([A, B]).map((i) => i.id), [A], 'A has no name left');
  assert.equal(index.has(A), false);
});

test('unname: by tag that tag; by digest that digest and the repo\'s tags; by id everything', () => {
  const index = indexOf(A);
  index.name(A, { tag: 'r/vm:1' });
  index.name(A, { tag: 'r/vm:2' });
  index.name(A, { tag: 'q/vm:1', digestRef: `r/vm@${MANIFEST}` });
  const img = index.get(A)!;
  index.unname(img, parseImageRef('r/vm:1'));
  assert.deepEqual(img.repoTags, ['r/vm:2', 'q/vm:1']);
  index.unname(img, parseImageRef(`r/vm@${MANIFEST}`));
  assert.deepEqual([img.repoTags, img.repoDigests], [['q/vm:1'], []]);
  assert.deepEqual(index.dropUnnamed([A]), [], 'still named');
  const snapshot = index.snapshot();
  index.unname(img, parseImageRef(A));
  assert.deepEqual(index.dropUnnamed([A]).map((i) => i.id), [A]);
  index.restore(snapshot);
  assert.deepEqual(index.get(A)?.repoTags, ['q/vm:1'], 'the snapshot puts it back');
});

test('sorted: oldest pull first, ties by id', () => {
  const index = indexOf(B, A);
  index.get(B)!.pulledAtNs = 1n;
  index.get(A)!.pulledAtNs = 1n;
  assert.deepEqual(index.sorted().map((i) => i.id), [A, B]);
  index.get(A)!.pulledAtNs = 2n;
  assert.deepEqual(index.sorted().map((i) => i.id), [B, A]);
});
