import test from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { WebSocket } from 'ws';
import { StreamingServer } from '../../../src/streaming/server.js';
import { SpdySession, type SpdyStream } from '../../../src/streaming/spdy/session.js';
import { TokenCache } from '../../../src/streaming/tokens.js';
import { createLogger } from '../../../src/log.js';
import type { SessionIo, StreamingRuntime } from '../../../src/streaming/types.js';
import type { Duplex } from 'node:stream';
import { spdyUpgrade, collect } from '../../helpers/spdy_client.js';

/** Port 2 of the fake pod: a server that answers at once and closes, without reading the request. */
let answerPort = 0;
const answerAndClose = net.createServer((s) => {
  s.on('error', () => {});
  s.end('HTTP/1.0 200 OK\r\n\r\nbye\n');
});
answerAndClose.listen(0, '127.0.0.1', () => (answerPort = (answerAndClose.address() as net.AddressInfo).port));
answerAndClose.unref();

/** A runtime whose "programs" are JS: echo stdin upper-cased, write stderr, exit with a code. */
function fakeRuntime(echoPort: () => number): StreamingRuntime & { attaches: number } {
  const rt = {
    attaches: 0,
    async exec(_id: string, cmd: string[], io: SessionIo) {
      let input = '';
      if (io.stdin) for await (const c of io.stdin) input += String(c);
      io.stdout?.write(`out:${cmd.join(' ')}:${input.toUpperCase()}`);
      io.stderr?.write('err-bytes');
      return { exitCode: Number(cmd[cmd.length - 1]) || 0 };
    },
    async attach(_id: string, io: SessionIo) {
      rt.attaches++;
      io.stdout?.write('login: ');
      await new Promise<void>((resolve) => io.stdin?.once('data', () => resolve()) ?? resolve());
    },
    async portForward(_sb: string, port: number): Promise<Duplex> {
      if (port === 1) throw new Error('connection refused');
      if (port === 2) return net.connect(answerPort, '127.0.0.1');
      return net.connect(echoPort(), '127.0.0.1');
    },
  };
  return rt;
}

async function withServer(fn: (server: StreamingServer, echoPort: number) => Promise<void>, ttlMs?: number): Promise<void> {
  const echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  const echoPort = (echo.address() as net.AddressInfo).port;
  const server = new StreamingServer({ address: '127.0.0.1:0', runtime: fakeRuntime(() => echoPort), logger: createLogger('silent'), ...(ttlMs ? { tokenTtlMs: ttlMs } : {}), streamCreationTimeoutMs: 2000 });
  await server.start();
  try {
    await fn(server, echoPort);
  } finally {
    await server.stop();
    echo.close();
  }
}

test('SPDY v4 exec: stdin, stdout, stderr, and the exit code as a NonZeroExitCode status', async () => {
  await withServer(async (server) => {
    const url = server.urlFor({ kind: 'exec', containerId: 'c1', cmd: ['prog', '3'], tty: false, stdin: true, stdout: true, stderr: true });
    const up = await spdyUpgrade(url, ['v4.channel.k8s.io', 'v3.channel.k8s.io']);
    assert.equal(up.status, 101);
    assert.match(up.headers, /X-Stream-Protocol-Version: v4.channel.k8s.io/);
    const session = up.session!;
    const error = session.openStream({ streamtype: ['error'] });
    const stdin = session.openStream({ streamtype: ['stdin'] });
    const stdout = session.openStream({ streamtype: ['stdout'] });
    const stderr = session.openStream({ streamtype: ['stderr'] });
    const [errText, outText, errBytes] = [collect(error), collect(stdout), collect(stderr)];
    await stdin.replied;
    stdin.end('hello');
    const status = JSON.parse(await errText);
    assert.equal(await outText, 'out:prog 3:HELLO');
    assert.equal(await errBytes, 'err-bytes');
    assert.equal(status.status, 'Failure');
    assert.equal(status.reason, 'NonZeroExitCode');
    assert.deepEqual(status.details.causes, [{ reason: 'ExitCode', message: '3' }]);
  });
});

test('SPDY v4 exec with exit code 0 ends with a Success status', async () => {
  await withServer(async (server) => {
    const url = server.urlFor({ kind: 'exec', containerId: 'c1', cmd: ['prog', '0'], tty: false, stdin: false, stdout: true, stderr: false });
    const { session } = await spdyUpgrade(url, ['v4.channel.k8s.io']);
    const error = session!.openStream({ streamtype: ['error'] });
    const stdout = session!.openStream({ streamtype: ['stdout'] });
    const [e, o] = await Promise.all([collect(error), collect(stdout)]);
    assert.equal(o, 'out:prog 0:');
    assert.deepEqual(JSON.parse(e), { metadata: {}, status: 'Success' });
  });
});

test('tokens: unknown, reused and expired tokens are refused before anything runs', async () => {
  await withServer(async (server) => {
    const url = server.urlFor({ kind: 'exec', containerId: 'c1', cmd: ['x'], tty: false, stdin: false, stdout: true, stderr: false });
    const first = await spdyUpgrade(url, ['v4.channel.k8s.io']);
    assert.equal(first.status, 101);
    first.session!.close();
    const reused = await spdyUpgrade(url, ['v4.channel.k8s.io']);
    assert.equal(reused.status, 404);
    const bad = await spdyUpgrade(url.replace(/[^/]+$/, 'AAAAAAAAAAA'), ['v4.channel.k8s.io']);
    assert.equal(bad.status, 404);
    const wrongKind = server.urlFor({ kind: 'exec', containerId: 'c1', cmd: ['x'], tty: false, stdin: false, stdout: true, stderr: false }).replace('/exec/', '/attach/');
    assert.equal((await spdyUpgrade(wrongKind, ['v4.channel.k8s.io'])).status, 404);
    const noProto = server.urlFor({ kind: 'exec', containerId: 'c1', cmd: ['x'], tty: false, stdin: false, stdout: true, stderr: false });
    const refused = await spdyUpgrade(noProto, ['v9.channel.k8s.io']);
    assert.equal(refused.status, 403);
    assert.match(refused.headers, /unable to negotiate protocol/);
  });
  await withServer(async (server) => {
    const url = server.urlFor({ kind: 'exec', containerId: 'c1', cmd: ['x'], tty: false, stdin: false, stdout: true, stderr: false });
    await new Promise((r) => setTimeout(r, 80));
    assert.equal((await spdyUpgrade(url, ['v4.channel.k8s.io'])).status, 404);
  }, 50);
  const cache = new TokenCache<number>(1000, 2);
  cache.insert(1);
  cache.insert(2);
  assert.throws(() => cache.insert(3), /already waiting/);
});

test('SPDY port-forward: pairs by requestID, data echoed, a failing port reported on its own error stream', async () => {
  await withServer(async (server) => {
    const url = server.urlFor({ kind: 'portforward', sandboxId: 'sb', ports: [] });
    const { status, session } = await spdyUpgrade(url, ['portforward.k8s.io']);
    assert.equal(status, 101);
    const results = await Promise.all(
      Array.from({ length: 5 }, async (_, i) => {
        const port = i === 4 ? '1' : '8080';
        const err = session!.openStream({ streamtype: ['error'], port: [port], requestid: [String(i)] });
        const data = session!.openStream({ streamtype: ['data'], port: [port], requestid: [String(i)] });
        const errText = collect(err);
        const got = collect(data);
        await data.replied;
        data.end(Buffer.alloc(100_000 + i, i));
        return { data: await got, err: await errText };
      }),
    );
    for (let i = 0; i < 4; i++) {
      assert.equal(results[i]!.data.length, 100_000 + i);
      assert.equal(results[i]!.err, '');
    }
    assert.match(results[4]!.err, /error forwarding port 1 to pod sandbox sb: connection refused/);
    session!.close();
  });
});

// Found with 20 concurrent half-closed streams to busybox httpd: when the pod's server answered
// and closed before the client's FIN was read, the pod side was unpiped from the client's stream,
// whose end then never came; the pair's error stream never ended and the client waited forever.
test('SPDY port-forward: the pod closes before the client half-closes; the client FIN afterwards still ends the pair', { timeout: 10_000 }, async () => {
  await withServer(async (server) => {
    const url = server.urlFor({ kind: 'portforward', sandboxId: 'sb', ports: [] });
    const { session } = await spdyUpgrade(url, ['portforward.k8s.io']);
    for (let i = 0; i < 10; i++) {
      const err = session!.openStream({ streamtype: ['error'], port: ['2'], requestid: [String(i)] }, true);
      const data = session!.openStream({ streamtype: ['data'], port: ['2'], requestid: [String(i)] });
      const errText = collect(err);
      const got = collect(data);
      data.write('GET / HTTP/1.0\r\n\r\n');
      // The whole answer and the pod's FIN first, then the client's own FIN.
      assert.equal(await got, 'HTTP/1.0 200 OK\r\n\r\nbye\n');
      await new Promise((r) => setTimeout(r, 20));
      data.end();
      assert.equal(await errText, '', `pair ${i} ended without an error`);
    }
    await session!.close();
  });
});

test('WebSocket v5 exec: channel prefixes, first empty message, stdin closed by the close signal, status on channel 3', async () => {
  await withServer(async (server) => {
    const url = server.urlFor({ kind: 'exec', containerId: 'c1', cmd: ['p', '1'], tty: false, stdin: true, stdout: true, stderr: true });
    const ws = new WebSocket(url.replace('http:', 'ws:'), ['v5.channel.k8s.io']);
    const messages: Buffer[] = [];
    ws.on('message', (m: Buffer) => messages.push(Buffer.from(m)));
    await new Promise((r) => ws.once('open', r));
    assert.equal(ws.protocol, 'v5.channel.k8s.io');
    ws.send(Buffer.from([0, ...Buffer.from('abc')]));
    ws.send(Buffer.from([255, 0]));
    await new Promise((r) => ws.once('close', r));
    assert.deepEqual(messages[0], Buffer.from([1]));
    const byChannel = (ch: number) => Buffer.concat(messages.filter((m) => m[0] === ch).map((m) => m.subarray(1))).toString();
    assert.equal(byChannel(1), 'out:p 1:ABC');
    assert.equal(byChannel(2), 'err-bytes');
    assert.equal(JSON.parse(byChannel(3)).details.causes[0].message, '1');
  });
});

test('SPDY v4 attach: the console output on stdout, input on stdin, a Success status when the session ends', async () => {
  await withServer(async (server) => {
    const url = server.urlFor({ kind: 'attach', containerId: 'c1', tty: false, stdin: true, stdout: true, stderr: true });
    const { status, session } = await spdyUpgrade(url, ['v4.channel.k8s.io']);
    assert.equal(status, 101);
    const error = session!.openStream({ streamtype: ['error'] });
    const stdin = session!.openStream({ streamtype: ['stdin'] });
    const stdout = session!.openStream({ streamtype: ['stdout'] });
    const stderr = session!.openStream({ streamtype: ['stderr'] });
    const [errText, outText, errBytes] = [collect(error), collect(stdout), collect(stderr)];
    await stdin.replied;
    stdin.write('root\n');
    assert.equal(await outText, 'login: ');
    assert.equal(await errBytes, '');
    assert.deepEqual(JSON.parse(await errText), { metadata: {}, status: 'Success' });
  });
});

test('WebSocket v4 attach: the first message is an empty one on stdout, then the console output; input on channel 0', async () => {
  await withServer(async (server) => {
    const url = server.urlFor({ kind: 'attach', containerId: 'c1', tty: true, stdin: true, stdout: true, stderr: false });
    const ws = new WebSocket(url.replace('http:', 'ws:'), ['v4.channel.k8s.io']);
    const messages: Buffer[] = [];
    ws.on('message', (m: Buffer) => messages.push(Buffer.from(m)));
    await new Promise((r) => ws.once('open', r));
    assert.equal(ws.protocol, 'v4.channel.k8s.io');
    ws.send(Buffer.from([0, ...Buffer.from('root\n')]));
    await new Promise((r) => ws.once('close', r));
    // Byte for byte: channel 1 empty, channel 1 "login: ", channel 3 the v4 Success status.
    assert.deepEqual(messages.map((m) => m.toString('latin1')), ['\x01', '\x01login: ', '\x03{"metadata":{},"status":"Success"}']);
  });
});

test('WebSocket port-forward (v4.channel.k8s.io): port bytes first on both channels, then data', async () => {
  await withServer(async (server) => {
    const url = server.urlFor({ kind: 'portforward', sandboxId: 'sb', ports: [] });
    const ws = new WebSocket(`${url.replace('http:', 'ws:')}?port=8080`, ['v4.channel.k8s.io']);
    const messages: Buffer[] = [];
    ws.on('message', (m: Buffer) => {
      messages.push(Buffer.from(m));
      if (messages.length === 2) ws.send(Buffer.from([0, ...Buffer.from('ping')]));
      if (Buffer.concat(messages.filter((x) => x[0] === 0).map((x) => x.subarray(1))).toString().endsWith('ping')) ws.close();
    });
    await new Promise((r) => ws.once('close', r));
    assert.deepEqual(messages[0], Buffer.from([0, 8080 & 0xff, 8080 >> 8]));
    assert.deepEqual(messages[1], Buffer.from([1, 8080 & 0xff, 8080 >> 8]));
    assert.equal(Buffer.concat(messages.slice(2).filter((x) => x[0] === 0).map((x) => x.subarray(1))).toString(), 'ping');
  });
});

test('SPDY tunnelled in WebSocket: the SPDY/3.1+portforward.k8s.io subprotocol is accepted and named in the 101', async () => {
  await withServer(async (server) => {
    const u = new URL(server.urlFor({ kind: 'portforward', sandboxId: 'sb', ports: [] }));
    const socket = net.connect(Number(u.port), u.hostname);
    socket.write(
      `GET ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io\r\n\r\n',
    );
    const head: string = await new Promise((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString())));
    socket.destroy();
    assert.match(head, /^HTTP\/1.1 101/);
    assert.match(head, /Sec-WebSocket-Protocol: SPDY\/3.1\+portforward.k8s.io\r\n/);
  });
});

test('a plain HTTP request to a streaming URL is refused with 400', async () => {
  await withServer(async (server) => {
    const url = server.urlFor({ kind: 'attach', containerId: 'c1', tty: true, stdin: true, stdout: true, stderr: false });
    const res = await fetch(url, { method: 'POST' });
    assert.equal(res.status, 400);
  });
});
