import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { UnavailableError } from '../../../src/errors.js';
import { makeQcow2, serveBody, sha256Hex, startImageServer, startProxy, type ImageServer, type TestProxy } from '../../helpers/image_server.js';
import { makeStore } from './fixture.js';

let server: ImageServer;
let proxy: TestProxy;
let qcow: Buffer;

before(async () => {
  server = await startImageServer();
  proxy = await startProxy();
  qcow = await makeQcow2(1024 * 1024);
  server.route('/tls/disk.qcow2', serveBody(qcow));
});
after(async () => {
  await proxy.close();
  await server.close();
});

const indent = (pem: string, n: number): string =>
  pem
    .trim()
    .split('\n')
    .map((l) => ' '.repeat(n) + l)
    .join('\n');

test('https: refused without the CA, accepted with it, and with insecure', async (t) => {
  const f = await makeStore(t);
  const url = `${server.httpsBase}/tls/disk.qcow2`;
  await assert.rejects(f.store.pull(url), (err: unknown) => {
    assert.ok(err instanceof UnavailableError, String(err));
    assert.match(err.message, /certificate/);
    return true;
  });
  await f.writeTranslation(
    'tls.yaml',
    [
      'translations:',
      '  - name: with-ca',
      `    url: ${url}`,
      '    transport: ca',
      '  - name: insecure',
      `    url: ${url}`,
      '    transport: lax',
      '  - name: wrong-name',
      `    url: ${url}`,
      '    transport: other-name',
      'transports:',
      '  ca:',
      '    tls:',
      '      certificates:',
      '        - cert: |',
      indent(server.ca.caPem, 12),
      '  other-name:',
      '    tls:',
      '      serverName: not-this-server.example',
      '      certificates:',
      '        - cert: |',
      indent(server.ca.caPem, 12),
      '  lax:',
      '    tls:',
      '      insecure: true',
      '',
    ].join('\n'),
  );
  const id = `sha256:${sha256Hex(qcow)}`;
  assert.equal((await f.store.pull('with-ca')).id, id);
  assert.equal((await f.store.pull('insecure')).id, id);
  // serverName changes what the certificate is checked against.
  await assert.rejects(f.store.pull('wrong-name'), /not-this-server\.example|altnames|Hostname/);
  assert.deepEqual(f.store.status(id)?.repoTags.sort(), ['insecure:latest', 'with-ca:latest']);
});

test('proxy: absolute-form request for http, CONNECT tunnel for https', async (t) => {
  const f = await makeStore(t);
  server.route('/proxy/disk.qcow2', serveBody(qcow));
  const httpUrl = `${server.httpBase}/proxy/disk.qcow2`;
  const httpsUrl = `${server.httpsBase}/proxy/disk.qcow2`;
  await f.writeTranslation(
    'p.yaml',
    [
      'translations:',
      '  - name: via-proxy',
      `    url: ${httpUrl}`,
      '  - name: via-tunnel',
      `    url: ${httpsUrl}`,
      'transports:',
      '  "":',
      `    proxy: ${proxy.url}`,
      '    tls:',
      '      certificates:',
      '        - cert: |',
      indent(server.ca.caPem, 12),
      '',
    ].join('\n'),
  );
  const before = { forwarded: proxy.forwarded.length, tunnels: proxy.tunnels.length };
  const a = await f.store.pull('via-proxy');
  assert.deepEqual(proxy.forwarded.slice(before.forwarded), [httpUrl]);
  const b = await f.store.pull('via-tunnel');
  assert.deepEqual(proxy.tunnels.slice(before.tunnels), [new URL(httpsUrl).host]);
  assert.equal(a.id, b.id);
  assert.equal(a.id, `sha256:${sha256Hex(qcow)}`);
});

test('https with a client certificate from the transport profile', async (t) => {
  const f = await makeStore(t);
  const url = `${server.mtlsBase}/tls/disk.qcow2`;
  const caEntry = ['        - cert: |', indent(server.ca.caPem, 12)];
  await f.writeTranslation(
    'mtls.yaml',
    [
      'translations:',
      '  - name: with-client-cert',
      `    url: ${url}`,
      '    transport: mtls',
      '  - name: without-client-cert',
      `    url: ${url}`,
      '    transport: ca-only',
      'transports:',
      '  mtls:',
      '    tls:',
      '      certificates:',
      ...caEntry,
      '        - cert: |',
      indent(server.ca.clientCertPem, 12),
      '          key: |',
      indent(server.ca.clientKeyPem, 12),
      '  ca-only:',
      '    tls:',
      '      certificates:',
      ...caEntry,
      '',
    ].join('\n'),
  );
  assert.equal((await f.store.pull('with-client-cert')).id, `sha256:${sha256Hex(qcow)}`);
  await assert.rejects(f.store.pull('without-client-cert'), UnavailableError);
});
