/**
 * Download limits against a local HTTP server on 127.0.0.1: an endless chunked body stops at the
 * maximum image size, a Content-Length of 1 PiB is refused before a byte is written (above the
 * maximum, or above the free space when there is no maximum), a cancelled pull stops the transfer;
 * each leaves the store's temp dir empty and the server sees its connection closed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import { Code, VmletError } from '../../../src/errors.js';
import { startImageServer, type ImageServer } from '../../helpers/image_server.js';
import { makeStore } from './fixture.js';

let server: ImageServer;
before(async () => {
  server = await startImageServer();
});
after(async () => {
  await server.close();
});

const PIB = 2 ** 50;

/** Writes 64 KiB chunks (chunked encoding, no length) until the client goes away; counts them. */
function endless(stats: { sent: number; closed: boolean }) {
  return (_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const chunk = Buffer.alloc(64 * 1024, 7);
    const pump = (): void => {
      while (!res.destroyed && res.write(chunk)) stats.sent += chunk.length;
      if (!res.destroyed) res.once('drain', pump);
    };
    res.once('close', () => (stats.closed = true));
    pump();
  };
}

/** Announces `length` bytes and sends a trickle of them every 20 ms until the client goes away. */
function announce(length: number, stats: { sent: number; closed: boolean }) {
  return (_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(length) });
    const timer = setInterval(() => {
      if (res.destroyed) return;
      res.write(Buffer.alloc(4096, 1));
      stats.sent += 4096;
    }, 20);
    res.once('close', () => {
      clearInterval(timer);
      stats.closed = true;
    });
  };
}

async function codeAndMessage(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof VmletError, `not a VmletError: ${String(err)}`);
    return { code: err.code, message: err.message };
  }
  assert.fail('the pull succeeded');
}

async function waitClosed(stats: { closed: boolean }): Promise<void> {
  for (let i = 0; i < 200 && !stats.closed; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(stats.closed, 'the server still sends: the download was not stopped');
}

test('an endless chunked body stops at the maximum image size: RESOURCE_EXHAUSTED, nothing left', async (t) => {
  const max = 16 * 1024 * 1024;
  const f = await makeStore(t, { maxImageBytes: max });
  const stats = { sent: 0, closed: false };
  server.route('/limits/endless', endless(stats));
  const { code, message } = await codeAndMessage(f.store.pull(`${server.httpBase}/limits/endless`));
  assert.equal(code, Code.RESOURCE_EXHAUSTED);
  assert.match(message, new RegExp(`sent more than the maximum image size \\(--max-image-size\\) of ${max} bytes`));
  await waitClosed(stats);
  assert.ok(stats.sent < max + 8 * 1024 * 1024, `the server sent ${stats.sent} bytes`);
  assert.deepEqual(await f.tmpNames(), []);
  assert.deepEqual(await f.blobNames(), []);
});

test('a Content-Length of 1 PiB is refused before anything is written: above the maximum, or above the free space', async (t) => {
  for (const maxImageBytes of [64 * 2 ** 30, undefined]) {
    const f = await makeStore(t, maxImageBytes === undefined ? {} : { maxImageBytes });
    const stats = { sent: 0, closed: false };
    const path = `/limits/pib-${maxImageBytes ?? 'nomax'}`;
    server.route(path, announce(PIB, stats));
    const { code, message } = await codeAndMessage(f.store.pull(`${server.httpBase}${path}`));
    assert.equal(code, Code.RESOURCE_EXHAUSTED);
    if (maxImageBytes !== undefined) assert.match(message, new RegExp(`announces ${PIB} bytes, more than the maximum image size \\(--max-image-size\\) of ${maxImageBytes} bytes`));
    else assert.match(message, new RegExp(`announces ${PIB} bytes, more than the \\d+ bytes free in the image directory`));
    await waitClosed(stats);
    assert.deepEqual(await f.tmpNames(), []);
    assert.deepEqual(await f.blobNames(), []);
  }
});

test('a cancelled pull stops the transfer: CANCELLED, nothing left', async (t) => {
  const f = await makeStore(t, { maxImageBytes: 64 * 2 ** 30 });
  const stats = { sent: 0, closed: false };
  server.route('/limits/slow', announce(2 ** 30, stats));
  const caller = new AbortController();
  const pull = f.store.pull(`${server.httpBase}/limits/slow`, { signal: caller.signal });
  while (!(stats.sent > 0 && (await f.tmpNames()).length > 0)) await new Promise((r) => setTimeout(r, 10));
  caller.abort();
  const { code, message } = await codeAndMessage(pull);
  assert.equal(code, Code.CANCELLED);
  assert.match(message, /pull of ".*\/limits\/slow" cancelled/);
  await waitClosed(stats);
  assert.deepEqual(await f.tmpNames(), []);
});
