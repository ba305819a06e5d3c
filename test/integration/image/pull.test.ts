import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import {
  CancelledError,
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
} from '../../../src/errors.js';
import {
  dropAfter,
  hangAfter,
  makeQcow2,
  makeRaw,
  redirectTo,
  serveBody,
  serveSlowly,
  sha256Hex,
  startImageServer,
  type ImageServer,
} from '../../helpers/image_server.js';
import { makeStore } from './fixture.js';

let server: ImageServer;
let qcow: Buffer; // 1 MiB virtual
let qcowBig: Buffer; // 2 MiB virtual, different content

before(async () => {
  server = await startImageServer();
  qcow = await makeQcow2(1024 * 1024);
  qcowBig = await makeQcow2(2 * 1024 * 1024);
});
after(async () => {
  await server.close();
});

test('pull by translated name: content-addressed blob, kubelet-style tag, every ref form finds it', async (t) => {
  const f = await makeStore(t);
  server.route('/t1/cirros.qcow2', serveBody(qcow));
  await f.writeTranslation('images.yaml', `translations:\n  - name: cirros\n    url: ${server.httpBase}/t1/cirros.qcow2\n`);

  const rec = await f.store.pull('cirros');
  const hex = sha256Hex(qcow);
  assert.equal(rec.id, `sha256:${hex}`);
  assert.deepEqual(rec.repoTags, ['cirros:latest']);
  assert.deepEqual(rec.repoDigests, []);
  assert.equal(rec.format, 'qcow2');
  assert.equal(rec.virtualSize, 1048576n);
  assert.equal(rec.size, BigInt(qcow.length));
  assert.equal(rec.sourceUrl, `${server.httpBase}/t1/cirros.qcow2`);
  assert.ok(rec.pulledAtNs > 0n);

  const blob = f.store.blobPath(rec.id);
  assert.ok(blob.endsWith(`/blobs/sha256/${hex}`));
  assert.deepEqual(await readFile(blob), qcow);
  assert.equal((await stat(blob)).mode & 0o777, 0o644);
  assert.deepEqual(await f.blobNames(), [hex]);

  for (const ref of ['cirros', 'cirros:latest', rec.id, hex, `cirros@${rec.id}`]) {
    assert.equal(f.store.status(ref)?.id, rec.id, ref);
  }
  assert.equal(f.store.status('cirros:other'), undefined);
  assert.equal(f.store.status(`other@${rec.id}`), undefined);
  assert.deepEqual(f.store.list().map((r) => r.id), [rec.id]);
  assert.deepEqual(f.store.list({ image: 'cirros' }).map((r) => r.id), [rec.id]);
  assert.deepEqual(f.store.list({ image: 'nothing' }), []);
  // A name whose translation is cached and unchanged pulls again without re-reading anything odd.
  assert.equal((await f.store.pull('cirros:latest')).id, rec.id);
});

test('pull by URL: raw image, size rules, URL kept as the repo', async (t) => {
  const f = await makeStore(t);
  const raw = makeRaw(64 * 1024, 'url-pull');
  server.route('/t2/disk.raw', serveBody(raw));
  const url = `${server.httpBase}/t2/disk.raw`;
  const rec = await f.store.pull(url);
  assert.equal(rec.format, 'raw');
  assert.equal(rec.virtualSize, BigInt(raw.length));
  assert.deepEqual(rec.repoTags, [`${url}:latest`]);
  assert.equal(f.store.status(url)?.id, rec.id);
  assert.equal(f.store.status(`${url}:latest`)?.id, rec.id);
});

test('digest pin: a match records a repo digest, a mismatch is refused and leaves nothing', async (t) => {
  const f = await makeStore(t);
  server.route('/t3/a.qcow2', serveBody(qcow));
  const url = `${server.httpBase}/t3/a.qcow2`;
  await f.writeTranslation('d.yaml', `translations:\n  - name: pinned\n    url: ${url}\n`);
  const hex = sha256Hex(qcow);

  const ok = await f.store.pull(`pinned@sha256:${hex}`);
  assert.equal(ok.id, `sha256:${hex}`);
  assert.deepEqual(ok.repoDigests, [`pinned@sha256:${hex}`]);
  assert.deepEqual(ok.repoTags, []);
  assert.equal(f.store.status(`pinned@sha256:${hex}`)?.id, ok.id);
  assert.equal(f.store.status('pinned'), undefined, 'a digest pull adds no tag');
  const hitsAfterFirst = server.hits.get('/t3/a.qcow2');
  // Content we hold already is not downloaded again for a digest it matches.
  await f.store.pull(`pinned@sha256:${hex}`);
  assert.equal(server.hits.get('/t3/a.qcow2'), hitsAfterFirst);

  const wrong = 'f'.repeat(64);
  await assert.rejects(f.store.pull(`pinned@sha256:${wrong}`), (err: unknown) => {
    assert.ok(err instanceof FailedPreconditionError, String(err));
    assert.match(err.message, /digest/);
    return true;
  });
  await assert.rejects(f.store.pull(`fresh@sha256:${wrong}`), NotFoundError);
  assert.deepEqual(await f.blobNames(), [hex]);
  assert.deepEqual(await f.tmpNames(), []);
  assert.equal(f.store.status(`pinned@sha256:${wrong}`), undefined);
  assert.equal(f.store.list().length, 1);
});

test('junk is refused and removed: error pages, odd sizes, archives, 404', async (t) => {
  const f = await makeStore(t);
  const html = Buffer.from('<!DOCTYPE html><html><body>Please log in</body></html>\n'.padEnd(2048, ' '));
  const gz = Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x00]), Buffer.alloc(4092, 7)]);
  const odd = Buffer.concat([makeRaw(4096), Buffer.from([1, 2, 3])]);
  server.route('/t4/page.img', serveBody(html, { contentType: 'text/html' }));
  server.route('/t4/disk.img.gz', serveBody(gz));
  server.route('/t4/odd.img', serveBody(odd));
  server.route('/t4/empty.img', serveBody(Buffer.alloc(0)));
  for (const [path, pattern] of [
    ['/t4/page.img', /text/],
    ['/t4/disk.img.gz', /gzip/],
    ['/t4/odd.img', /512-byte sectors/],
    ['/t4/empty.img', /empty/],
  ] as const) {
    await assert.rejects(f.store.pull(`${server.httpBase}${path}`), (err: unknown) => {
      assert.ok(err instanceof FailedPreconditionError, `${path}: ${String(err)}`);
      assert.match(err.message, pattern);
      return true;
    });
  }
  await assert.rejects(f.store.pull(`${server.httpBase}/t4/missing.img`), NotFoundError);
  server.route('/t4/busy.img', (_req, res) => {
    res.writeHead(503, { 'retry-after': '1' });
    res.end('busy');
  });
  server.route('/t4/forbidden.img', (_req, res) => {
    res.writeHead(403);
    res.end('no');
  });
  await assert.rejects(f.store.pull(`${server.httpBase}/t4/busy.img`), (err: unknown) => {
    assert.ok(err instanceof UnavailableError, String(err));
    assert.match(err.message, /HTTP 503/);
    return true;
  });
  await assert.rejects(f.store.pull(`${server.httpBase}/t4/forbidden.img`), /HTTP 403/);
  assert.deepEqual(await f.blobNames(), []);
  assert.deepEqual(await f.tmpNames(), []);
  assert.deepEqual(f.store.list(), []);
});

test('a qcow2 with a backing file is refused', async (t) => {
  const f = await makeStore(t);
  const evil = await makeQcow2(1024 * 1024, { backingFile: '/etc/shadow' });
  server.route('/t5/evil.qcow2', serveBody(evil));
  await assert.rejects(f.store.pull(`${server.httpBase}/t5/evil.qcow2`), /backing file/);
  assert.deepEqual(await f.blobNames(), []);
  assert.deepEqual(f.store.list(), []);
});

test('names without a translation are NotFound naming the dir; malformed names are InvalidArgument', async (t) => {
  const f = await makeStore(t);
  await f.writeTranslation('broken.yaml', 'translations: {}\n');
  await assert.rejects(f.store.pull('../../etc/passwd'), (err: unknown) => {
    assert.ok(err instanceof NotFoundError, String(err));
    assert.ok(err.message.includes(f.translationsDir), err.message);
    assert.match(err.message, /broken\.yaml/, 'unusable config files are named');
    return true;
  });
  await assert.rejects(f.store.pull('a\nb'), InvalidArgumentError);
  await assert.rejects(f.store.pull(''), InvalidArgumentError);
  await assert.rejects(f.store.pull(`sha256:${'0'.repeat(64)}`), NotFoundError);
  assert.throws(() => f.store.status('bad name'), InvalidArgumentError);
  assert.deepEqual(await f.blobNames(), []);
});

test('concurrent pulls of one name download once', async (t) => {
  const f = await makeStore(t);
  server.route('/t6/slow.qcow2', serveSlowly(qcow, 16 * 1024, 5));
  await f.writeTranslation('c.yaml', `translations:\n  - name: shared\n    url: ${server.httpBase}/t6/slow.qcow2\n`);
  const [a, b, c] = await Promise.all([f.store.pull('shared'), f.store.pull('shared:latest'), f.store.pull('shared')]);
  assert.equal(server.hits.get('/t6/slow.qcow2'), 1);
  assert.equal(a.id, `sha256:${sha256Hex(qcow)}`);
  assert.equal(b.id, a.id);
  assert.equal(c.id, a.id);
  // Each caller gets its own copy of the record.
  a.repoTags.push('mutated');
  assert.deepEqual(f.store.status('shared')?.repoTags, ['shared:latest']);
});

test('abort: the last caller to leave cancels the download and no temp file remains', async (t) => {
  const f = await makeStore(t);
  const big = makeRaw(4 * 1024 * 1024, 'abort');
  server.route('/t7/slow.raw', serveSlowly(big, 32 * 1024, 20));
  const url = `${server.httpBase}/t7/slow.raw`;

  const first = new AbortController();
  const second = new AbortController();
  const p1 = f.store.pull(url, { signal: first.signal });
  const p2 = f.store.pull(url, { signal: second.signal });
  while (!((server.hits.get('/t7/slow.raw') ?? 0) > 0 && (await f.tmpNames()).length > 0)) await new Promise((r) => setTimeout(r, 10));
  first.abort();
  await assert.rejects(p1, CancelledError);
  assert.equal((await f.tmpNames()).length, 1, 'the download goes on for the other caller');
  second.abort();
  await assert.rejects(p2, CancelledError);
  assert.deepEqual(await f.tmpNames(), [], 'rejecting the last caller waits for the cleanup');
  assert.deepEqual(await f.blobNames(), []);
  assert.equal(server.hits.get('/t7/slow.raw'), 1);

  // An already-aborted signal never starts anything.
  await assert.rejects(f.store.pull(url, { signal: AbortSignal.abort() }), CancelledError);
  assert.deepEqual(await f.tmpNames(), []);
});

test('redirects are followed up to the transport limit', async (t) => {
  const f = await makeStore(t);
  server.route('/t8/img.qcow2', serveBody(qcow));
  server.route('/t8/r1', redirectTo('/t8/r2', 301));
  server.route('/t8/r2', redirectTo(`${server.httpBase}/t8/img.qcow2`, 307));
  server.route('/t8/loop', redirectTo('/t8/loop'));
  server.route('/t8/ftp', redirectTo('ftp://127.0.0.1/x'));
  await f.writeTranslation(
    'r.yaml',
    [
      'translations:',
      `  - name: two-ok`,
      `    url: ${server.httpBase}/t8/r1`,
      `    transport: two`,
      `  - name: one-too-few`,
      `    url: ${server.httpBase}/t8/r1`,
      `    transport: one`,
      `  - name: loop`,
      `    url: ${server.httpBase}/t8/loop`,
      `  - name: ftp`,
      `    url: ${server.httpBase}/t8/ftp`,
      'transports:',
      '  two:',
      '    maxRedirects: 2',
      '  one:',
      '    maxRedirects: 1',
      '',
    ].join('\n'),
  );
  assert.equal((await f.store.pull('two-ok')).id, `sha256:${sha256Hex(qcow)}`);
  await assert.rejects(f.store.pull('one-too-few'), (err: unknown) => {
    assert.ok(err instanceof FailedPreconditionError, String(err));
    assert.match(err.message, /stopped after 1 redirect/);
    return true;
  });
  const loopHitsBefore = server.hits.get('/t8/loop') ?? 0;
  await assert.rejects(f.store.pull('loop'), /stopped after 9 redirect/);
  assert.equal((server.hits.get('/t8/loop') ?? 0) - loopHitsBefore, 10, 'default limit: 9 redirects, 10 requests');
  await assert.rejects(f.store.pull('ftp'), /ftp: URL, which is not allowed/);
});

test('timeouts: the transport deadline and the stall limit end a hanging download', async (t) => {
  const f = await makeStore(t, { stallTimeoutMs: 400 });
  server.route('/t9/hang.raw', hangAfter(1024 * 1024, 4096));
  server.route('/t9/slow.raw', serveSlowly(makeRaw(1024 * 1024), 1024, 50));
  await f.writeTranslation(
    't.yaml',
    `translations:\n  - name: slow\n    url: ${server.httpBase}/t9/slow.raw\n    transport: quick\ntransports:\n  quick:\n    timeout: 300\n`,
  );
  let started = Date.now();
  await assert.rejects(f.store.pull('slow'), (err: unknown) => {
    assert.ok(err instanceof DeadlineExceededError, String(err));
    assert.match(err.message, /longer than 300 ms/);
    return true;
  });
  assert.ok(Date.now() - started < 3000, 'the deadline ended it promptly');
  started = Date.now();
  await assert.rejects(f.store.pull(`${server.httpBase}/t9/hang.raw`), /no data .* for 400 ms/);
  assert.ok(Date.now() - started < 3000);
  assert.deepEqual(await f.tmpNames(), []);
  assert.deepEqual(await f.blobNames(), []);
});

test('a connection dropped mid-body is Unavailable and leaves nothing', async (t) => {
  const f = await makeStore(t);
  server.route('/t10/drop.raw', dropAfter(makeRaw(256 * 1024), 64 * 1024));
  await assert.rejects(f.store.pull(`${server.httpBase}/t10/drop.raw`), UnavailableError);
  assert.deepEqual(await f.tmpNames(), []);
  assert.deepEqual(await f.blobNames(), []);
});

test('a large download logs its progress', async (t) => {
  const f = await makeStore(t, { progressIntervalMs: 50 });
  const body = makeRaw(512 * 1024, 'progress');
  server.route('/t11/p.raw', serveSlowly(body, 32 * 1024, 20));
  await f.store.pull(`${server.httpBase}/t11/p.raw`);
  const progress = f.logs.filter((l) => l.msg === 'image download progress');
  assert.ok(progress.length >= 2, `expected progress lines, got ${progress.length}`);
  const last = progress[progress.length - 1]!;
  assert.equal(last.level, 30, 'info level');
  assert.equal(last.totalBytes, body.length);
  assert.ok(typeof last.receivedBytes === 'number' && last.receivedBytes > 0);
  assert.ok(typeof last.bytesPerSecond === 'number' && last.bytesPerSecond > 0);
});

test('re-pulling a name that now has other content moves the tag and deletes the old blob', async (t) => {
  const f = await makeStore(t);
  let body = qcow;
  server.route('/t12/moving.qcow2', (req, res) => serveBody(body)(req, res));
  await f.writeTranslation('m.yaml', `translations:\n  - name: moving\n    url: ${server.httpBase}/t12/moving.qcow2\n`);
  const first = await f.store.pull('moving');
  body = qcowBig;
  const second = await f.store.pull('moving');
  assert.notEqual(second.id, first.id);
  assert.equal(second.virtualSize, 2n * 1024n * 1024n);
  assert.equal(f.store.status('moving')?.id, second.id);
  assert.equal(f.store.status(first.id), undefined);
  assert.deepEqual(await f.blobNames(), [second.id.slice('sha256:'.length)]);
});

test('a re-pull of an unchanged source is a conditional request answered 304', async (t) => {
  const f = await makeStore(t);
  const seen: (string | undefined)[] = [];
  const handler = serveBody(qcow, { etag: true });
  server.route('/t13/etag.qcow2', (req, res) => {
    seen.push(req.headers['if-none-match'] as string | undefined);
    handler(req, res);
  });
  const url = `${server.httpBase}/t13/etag.qcow2`;
  const first = await f.store.pull(url);
  const second = await f.store.pull(url);
  assert.equal(second.id, first.id);
  assert.ok(second.pulledAtNs >= first.pulledAtNs);
  assert.equal(seen.length, 2);
  assert.equal(seen[0], undefined);
  assert.match(seen[1] ?? '', /^"[0-9a-f]{16}"$/, 'the second request carried the ETag');
  // After a restart the validators are still known.
  await f.reopen();
  await f.store.pull(url);
  assert.equal(seen.length, 3);
  assert.ok(seen[2]);
});
