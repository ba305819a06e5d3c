import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InternalError } from '../../../src/errors.js';
import { decodeIndex, encodeIndex } from '../../../src/image/index_codec.js';
import { longestMountPoint, parseMountPoints } from '../../../src/image/fs_usage.js';
import type { StoredImage } from '../../../src/image/types.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);

const images: StoredImage[] = [
  {
    id: `sha256:${B}`,
    repoTags: ['cirros:latest'],
    repoDigests: [],
    size: 12345678901234n,
    virtualSize: 1n << 40n,
    format: 'qcow2',
    sourceUrl: 'https://h/x.qcow2',
    pulledAtNs: 1700000000123456789n,
    etag: '"abc"',
  },
  {
    id: `sha256:${A}`,
    repoTags: [],
    repoDigests: [`pinned@sha256:${A}`],
    size: 512n,
    virtualSize: 512n,
    format: 'raw',
    sourceUrl: 'http://h/y.raw',
    pulledAtNs: 1n,
  },
];

test('index round-trips, bigints included, in a stable order', () => {
  const text = encodeIndex(images);
  const back = decodeIndex(text);
  assert.deepEqual(
    back.sort((x, y) => x.id.localeCompare(y.id)),
    [...images].sort((x, y) => x.id.localeCompare(y.id)),
  );
  assert.equal(encodeIndex(back), text);
});

test('a damaged or hostile index is refused with InternalError', () => {
  const good = JSON.parse(encodeIndex(images)) as { images: Record<string, unknown>[] };
  const variants: unknown[] = [
    'not json',
    '{"version":2,"images":[]}',
    { version: 1, images: [{ ...good.images[0], id: '../../etc/passwd' }] },
    { version: 1, images: [{ ...good.images[0], id: A }] },
    { version: 1, images: [{ ...good.images[0], format: 'vmdk' }] },
    { version: 1, images: [{ ...good.images[0], size: -1 }] },
    { version: 1, images: [{ ...good.images[0], repoTags: 'x' }] },
    { version: 1, images: [good.images[0], good.images[0]] },
  ];
  for (const v of variants) {
    const text = typeof v === 'string' ? v : JSON.stringify(v);
    assert.throws(() => decodeIndex(text), InternalError, text.slice(0, 80));
  }
});

test('mountinfo parsing unescapes mount points and picks the longest containing one', () => {
  const text = [
    '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
    '30 22 0:25 / /var/lib rw shared:2 - tmpfs tmpfs rw',
    '31 22 0:26 / /var/lib\\040with\\040space rw shared:3 - tmpfs tmpfs rw',
    '32 22 0:27 / /var/libvirt rw shared:4 - tmpfs tmpfs rw',
    '',
  ].join('\n');
  const mps = parseMountPoints(text);
  assert.deepEqual(mps, ['/', '/var/lib', '/var/lib with space', '/var/libvirt']);
  assert.equal(longestMountPoint(mps, '/var/lib/vmlet/images'), '/var/lib');
  assert.equal(longestMountPoint(mps, '/var/lib with space/x'), '/var/lib with space');
  assert.equal(longestMountPoint(mps, '/var/libx'), '/');
  assert.equal(longestMountPoint(mps, '/var/lib'), '/var/lib');
});
