import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostnameFromPodName, HOSTNAME_MAX_LENGTH, FALLBACK_HOSTNAME } from '../../../src/sandbox/hostname.js';

const DNS1123_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

test('a pod name that is already a short label is the hostname', () => {
  assert.equal(hostnameFromPodName('nginx-7d9c5'), 'nginx-7d9c5');
  assert.equal(hostnameFromPodName('a'), 'a');
  assert.equal(hostnameFromPodName('x'.repeat(63)), 'x'.repeat(63));
});

test("critest's 68-character pod name becomes a 63-character lowercase label", () => {
  const name = 'create-PodSandbox-for-container-0f7b5b9e-4d3c-4b8a-9d0e-1a2b3c4d5e6f';
  assert.equal(name.length, 68);
  const host = hostnameFromPodName(name);
  assert.equal(host, 'create-podsandbox-for-container-0f7b5b9e-4d3c-4b8a-9d0e-1a2b3c4');
  assert.equal(host.length, HOSTNAME_MAX_LENGTH);
});

test('the cut never ends on a dash, as kubelet trims "-" and "." after cutting', () => {
  // Character 63 (index 62) is a '-': kubelet cuts to 63, then trims it.
  const name = `${'a'.repeat(62)}-bcd`;
  assert.equal(hostnameFromPodName(name), 'a'.repeat(62));
  // Several separators before the cut all go.
  assert.equal(hostnameFromPodName(`${'b'.repeat(59)}-.-.-zzz`), 'b'.repeat(59));
});

test('dots, underscores and other characters outside a label become dashes', () => {
  assert.equal(hostnameFromPodName('web.default'), 'web-default');
  assert.equal(hostnameFromPodName('my_pod name'), 'my-pod-name');
  assert.equal(hostnameFromPodName('Ünïcode'), 'n-code');
});

test('leading and trailing separators are dropped', () => {
  assert.equal(hostnameFromPodName('-pod-'), 'pod');
  assert.equal(hostnameFromPodName('..pod..'), 'pod');
  assert.equal(hostnameFromPodName('_a_'), 'a');
});

test('a name with nothing usable gets the fallback hostname', () => {
  assert.equal(hostnameFromPodName('---'), FALLBACK_HOSTNAME);
  assert.equal(hostnameFromPodName('._.'), FALLBACK_HOSTNAME);
});

test('every result is a DNS-1123 label of at most 63 characters', () => {
  const names = ['create-PodSandbox-for-container-x', 'A'.repeat(300), `-${'z'.repeat(70)}`, 'a.b.c', '日本語', `${'q'.repeat(62)}..x`, 'Z', '0'];
  for (const name of names) assert.match(hostnameFromPodName(name), DNS1123_LABEL, name);
});
