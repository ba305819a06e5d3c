import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../../../src/errors.js';
import {
  MAX_IMAGE_NAME_LENGTH,
  normalizeImageId,
  parseImageName,
  parseImageRef,
  pullKey,
  repoDigestOf,
  repoTagOf,
  translationKey,
} from '../../../src/image/reference.js';

const HEX = '0123456789abcdef'.repeat(4);

test('names split into repo, tag and digest', () => {
  assert.deepEqual(parseImageName('cirros'), { repo: 'cirros' });
  assert.deepEqual(parseImageName('cirros:0.6'), { repo: 'cirros', tag: '0.6' });
  assert.deepEqual(parseImageName(`cirros@sha256:${HEX}`), { repo: 'cirros', digest: `sha256:${HEX}` });
  assert.deepEqual(parseImageName(`a/b:v1@sha256:${HEX}`), { repo: 'a/b', tag: 'v1', digest: `sha256:${HEX}` });
  // A colon followed by a path is a port, not a tag.
  assert.deepEqual(parseImageName('registry:5000/img'), { repo: 'registry:5000/img' });
  assert.deepEqual(parseImageName('https://h.example:8443/a/disk.qcow2'), { repo: 'https://h.example:8443/a/disk.qcow2' });
  assert.deepEqual(parseImageName('https://h.example/disk.qcow2:latest'), { repo: 'https://h.example/disk.qcow2', tag: 'latest' });
  // userinfo in a URL is not a digest
  assert.deepEqual(parseImageName('https://u:p@h.example/d.img'), { repo: 'https://u:p@h.example/d.img' });
});

test('kubelet-style normalization: no tag means :latest, digest-only has no tag', () => {
  assert.equal(repoTagOf(parseImageName('cirros')), 'cirros:latest');
  assert.equal(repoTagOf(parseImageName('cirros:latest')), 'cirros:latest');
  assert.equal(repoTagOf(parseImageName('cirros:0.6')), 'cirros:0.6');
  assert.equal(repoTagOf(parseImageName(`cirros@sha256:${HEX}`)), undefined);
  assert.equal(repoTagOf(parseImageName(`cirros:v1@sha256:${HEX}`)), 'cirros:v1');
  assert.equal(repoDigestOf(parseImageName(`cirros@sha256:${HEX}`)), `cirros@sha256:${HEX}`);
  assert.equal(repoDigestOf(parseImageName('cirros')), undefined);
  assert.equal(translationKey(parseImageName('cirros:latest')), 'cirros');
  assert.equal(translationKey(parseImageName('cirros:0.6')), 'cirros:0.6');
  assert.equal(pullKey(parseImageName('cirros')), pullKey(parseImageName('cirros:latest')));
  assert.notEqual(pullKey(parseImageName('cirros')), pullKey(parseImageName(`cirros@sha256:${HEX}`)));
});

test('ids are recognized with and without the sha256: prefix', () => {
  assert.equal(normalizeImageId(HEX), `sha256:${HEX}`);
  assert.equal(normalizeImageId(`sha256:${HEX}`), `sha256:${HEX}`);
  assert.equal(normalizeImageId(HEX.toUpperCase()), undefined);
  assert.equal(normalizeImageId(HEX.slice(1)), undefined);
  assert.deepEqual(parseImageRef(HEX), { kind: 'id', id: `sha256:${HEX}` });
  assert.deepEqual(parseImageRef('cirros'), { kind: 'name', name: { repo: 'cirros' } });
});

test('hostile names are refused', () => {
  const bad = [
    '',
    'a b',
    'a\nb',
    'a\u0000b',
    'caf\u00e9',
    'name:',
    ':tag',
    `name@sha256:${HEX.slice(2)}`,
    `name@sha256:${HEX.toUpperCase()}`,
    `@sha256:${HEX}`,
    'x'.repeat(MAX_IMAGE_NAME_LENGTH + 1),
  ];
  for (const name of bad) {
    assert.throws(() => parseImageName(name), InvalidArgumentError, JSON.stringify(name));
  }
  // Path-like names are fine as names: they are never used as paths.
  assert.deepEqual(parseImageName('../../etc/passwd'), { repo: '../../etc/passwd' });
});
