/**
 * Port-forward at volume: 20 concurrent streams of 10 MiB each, through one SPDY connection to
 * vmlet's streaming server, into sockets created inside a network namespace by the native helper
 * (as netd makes them for a pod), to an echo responder in that namespace. Every byte must come
 * back intact. (The busybox test guest cannot sink or echo 10 MiB, so the responder is a Node echo
 * server in a test netns; the e2e test covers the same path to a real VM with small transfers.)
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { StreamingServer } from '../../../src/streaming/server.js';
import { createLogger } from '../../../src/log.js';
import { netnsNative } from '../../../src/native/netns.js';
import { spdyUpgrade } from '../../helpers/spdy_client.js';
import type { Duplex } from 'node:stream';

const tag = randomBytes(3).toString('hex');
const netns = `vspf${tag}`;
const ECHO_PORT = 7777;
const STREAMS = 20;
const BYTES = 10 * 1024 * 1024;
let echo: ChildProcess | undefined;
let server: StreamingServer;
let dials = 0;

before(async () => {
  execFileSync('ip', ['netns', 'add', netns]);
  execFileSync('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
  echo = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e',
    `require('net').createServer((s) => s.pipe(s)).listen(${ECHO_PORT}, '127.0.0.1', () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    echo!.stdout!.once('data', () => resolve());
    echo!.once('exit', (code) => reject(new Error(`echo responder exited ${code}`)));
  });
  server = new StreamingServer({
    address: '127.0.0.1:0',
    logger: createLogger('silent'),
    runtime: {
      exec: () => Promise.reject(new Error('unused')),
      attach: () => Promise.reject(new Error('unused')),
      portForward: (_sandbox: string, port: number): Promise<Duplex> => {
        dials++;
        const socket = new net.Socket({ fd: netnsNative().tcp4SocketInNetns(`/run/netns/${netns}`) });
        return new Promise((resolve, reject) => {
          socket.once('error', reject);
          socket.connect(port, '127.0.0.1', () => resolve(socket));
        });
      },
    },
  });
  await server.start();
});

after(async () => {
  await server?.stop();
  echo?.kill('SIGKILL');
  execFileSync('ip', ['netns', 'del', netns]);
});

test(`${STREAMS} concurrent port-forward streams of 10 MiB each come back intact`, { timeout: 300_000 }, async () => {
  const url = server.urlFor({ kind: 'portforward', sandboxId: 'sb', ports: [ECHO_PORT] });
  const { status, session } = await spdyUpgrade(url, ['portforward.k8s.io']);
  assert.equal(status, 101);
  const started = Date.now();
  await Promise.all(Array.from({ length: STREAMS }, async (_, i) => {
    const payload = randomBytes(BYTES);
    const error = session!.openStream({ streamtype: ['error'], port: [String(ECHO_PORT)], requestid: [String(i)] }, true);
    const data = session!.openStream({ streamtype: ['data'], port: [String(ECHO_PORT)], requestid: [String(i)] });
    let errText = '';
    error.on('data', (c: Buffer) => (errText += c));
    const hash = createHash('sha256');
    let received = 0;
    const done = new Promise<void>((resolve) => {
      data.on('data', (c: Buffer) => {
        hash.update(c);
        received += c.length;
      });
      data.on('end', () => resolve());
    });
    // In pieces, respecting backpressure.
    for (let off = 0; off < BYTES; off += 256 * 1024) {
      if (!data.write(payload.subarray(off, off + 256 * 1024))) await new Promise((r) => data.once('drain', r));
    }
    data.end();
    await done;
    assert.equal(errText, '', `stream ${i}`);
    assert.equal(received, BYTES, `stream ${i} length`);
    assert.equal(hash.digest('hex'), createHash('sha256').update(payload).digest('hex'), `stream ${i} content`);
  }));
  const seconds = (Date.now() - started) / 1000;
  console.log(`# ${STREAMS} x 10 MiB echoed in ${seconds.toFixed(1)} s (${((2 * STREAMS * BYTES) / 1048576 / seconds).toFixed(0)} MiB/s both ways)`);
  assert.equal(dials, STREAMS, 'one in-netns socket per stream, no helper process');
  await session!.close();
});
