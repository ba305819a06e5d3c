import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import protobuf from 'protobufjs';
import { CriServer } from '../../../src/cri/server.js';
import { CRI_PROTO_PATH } from '../../../src/cri/proto.js';
import { encodeHeaderBlock, Http2AuthorityRewriter, isValidAuthority } from '../../../src/cri/http2_authority.js';
import { EventEmitter } from 'node:events';
import { silentLogger } from '../../../src/log.js';
import { connectRaw, rawUnary } from '../../helpers/http2_raw.js';

const root = new protobuf.Root().loadSync(CRI_PROTO_PATH, { keepCase: true });
const VersionResponse = root.lookupType('runtime.v1.VersionResponse');
const VersionRequest = root.lookupType('runtime.v1.VersionRequest');
const VERSION = '/runtime.v1.RuntimeService/Version';

async function withServer(fn: (socketPath: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-authority-'));
  const socketPath = join(dir, 'vmlet.sock');
  const server = new CriServer({
    socketPath,
    logger: silentLogger,
    runtimeHandlers: {
      // Echoes a digest of the request so tests can prove bodies arrive intact.
      Version: async (req: { version?: string }) => ({
        version: '0.1.0',
        runtime_name: 'vmlet',
        runtime_version: createHash('sha256').update(req.version ?? '').digest('hex'),
        runtime_api_version: 'v1',
      }),
    },
    imageHandlers: {},
  });
  await server.start();
  try {
    await fn(socketPath);
  } finally {
    await server.stop(1000);
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a plain grpc-js server resets a stream whose :authority is a socket path', async () => {
  // Documents the failure this module exists for; if Node ever accepts it, the rewriter can go.
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-plain-'));
  const socketPath = join(dir, 's.sock');
  const server = new grpc.Server();
  server.addService(
    { Version: { path: VERSION, requestStream: false, responseStream: false, requestSerialize: (x: Buffer) => x, requestDeserialize: (x: Buffer) => x, responseSerialize: (x: Buffer) => x, responseDeserialize: (x: Buffer) => x } },
    { Version: (_c: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.alloc(0)) },
  );
  await new Promise<void>((res, rej) => server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
  const session = connectRaw(socketPath);
  try {
    const reply = await rawUnary(session, VERSION, socketPath, Buffer.alloc(0));
    assert.equal(reply.rstCode, http2.constants.NGHTTP2_PROTOCOL_ERROR);
  } finally {
    session.close();
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('vmlet answers Version to a client sending the socket path as :authority', async () => {
  await withServer(async (socketPath) => {
    const session = connectRaw(socketPath);
    try {
      const reply = await rawUnary(session, VERSION, socketPath, Buffer.alloc(0));
      assert.equal(reply.rstCode, 0);
      assert.equal(reply.grpcStatus, '0');
      const decoded = VersionResponse.toObject(VersionResponse.decode(reply.body)) as Record<string, string>;
      assert.equal(decoded.runtime_name, 'vmlet');
      assert.equal(decoded.runtime_api_version, 'v1');
    } finally {
      session.close();
    }
  });
});

test('many requests on one connection with both authorities (HPACK-indexed after the first)', async () => {
  await withServer(async (socketPath) => {
    const session = connectRaw(socketPath);
    try {
      const authorities = [socketPath, 'localhost'];
      const replies = await Promise.all(
        Array.from({ length: 300 }, (_, i) => rawUnary(session, VERSION, authorities[i % 2]!, Buffer.alloc(0))),
      );
      for (const r of replies) {
        assert.equal(r.rstCode, 0);
        assert.equal(r.grpcStatus, '0');
        assert.equal((VersionResponse.toObject(VersionResponse.decode(r.body)) as Record<string, string>).runtime_name, 'vmlet');
      }
      // Sequential too, so the client's dynamic table is reused across blocks.
      for (let i = 0; i < 50; i++) {
        const r = await rawUnary(session, VERSION, socketPath, Buffer.alloc(0));
        assert.equal(r.grpcStatus, '0');
      }
    } finally {
      session.close();
    }
  });
});

test('an unimplemented RPC answers UNIMPLEMENTED over the rewritten connection', async () => {
  await withServer(async (socketPath) => {
    const session = connectRaw(socketPath);
    try {
      const r = await rawUnary(session, '/runtime.v1.RuntimeService/Exec', socketPath, Buffer.alloc(0));
      assert.equal(r.grpcStatus, String(grpc.status.UNIMPLEMENTED));
      assert.match(decodeURIComponent(r.grpcMessage ?? ''), /does not implement Exec/);
    } finally {
      session.close();
    }
  });
});

test('a large request body crosses the rewriter intact (flow control windows respected)', async () => {
  await withServer(async (socketPath) => {
    const session = connectRaw(socketPath);
    try {
      // 3 MiB body: far beyond the initial 64 KiB window, so WINDOW_UPDATEs must flow both ways.
      const text = 'v'.repeat(3 * 1024 * 1024 - 7) + 'the-end';
      const body = Buffer.from(VersionRequest.encode(VersionRequest.fromObject({ version: text })).finish());
      const r = await rawUnary(session, VERSION, socketPath, body);
      assert.equal(r.rstCode, 0);
      assert.equal(r.grpcStatus, '0', decodeURIComponent(r.grpcMessage ?? ''));
      const decoded = VersionResponse.toObject(VersionResponse.decode(r.body)) as Record<string, string>;
      assert.equal(decoded.runtime_version, createHash('sha256').update(text).digest('hex'));
    } finally {
      session.close();
    }
  });
});

test('garbage instead of an HTTP/2 preface closes that connection, not the server', async () => {
  await withServer(async (socketPath) => {
    await new Promise<void>((resolve) => {
      const s = net.connect(socketPath, () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(4)));
      s.on('data', () => {});
      s.on('error', () => resolve());
      s.on('close', () => resolve());
    });
    const session = connectRaw(socketPath);
    try {
      const r = await rawUnary(session, VERSION, socketPath, Buffer.alloc(0));
      assert.equal(r.grpcStatus, '0');
    } finally {
      session.close();
    }
  });
});

test('authority validity follows nghttp2 and the literal encoder round-trips', () => {
  assert.equal(isValidAuthority('localhost'), true);
  assert.equal(isValidAuthority('127.0.0.1:1234'), true);
  assert.equal(isValidAuthority('[::1]:80'), true);
  assert.equal(isValidAuthority('/run/vmlet/vmlet.sock'), false);
  assert.equal(isValidAuthority(''), false);
  // 0x00 literal-without-indexing, name length, name, value length, value.
  assert.deepEqual(encodeHeaderBlock([{ name: 'a', value: 'bc' }]), Buffer.from([0x00, 1, 0x61, 2, 0x62, 0x63]));
  const long = 'x'.repeat(200);
  const enc = encodeHeaderBlock([{ name: 'n', value: long }]);
  // 200 = 127 + 73 → 0x7f, 0x49 (RFC 7541 §5.1)
  assert.deepEqual(enc.subarray(3, 5), Buffer.from([0x7f, 73]));
});

/** Just what the rewriter uses of a net.Socket; the test feeds reads by emitting 'data'. */
class ReadFeed extends EventEmitter {
  readonly written: Buffer[] = [];
  remoteAddress = undefined;
  remotePort = undefined;
  resume(): this {
    return this;
  }
  pause(): this {
    return this;
  }
  write(chunk: Buffer, cb?: () => void): boolean {
    this.written.push(chunk);
    cb?.();
    return true;
  }
  destroy(): this {
    return this;
  }
}

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId, 5);
  return Buffer.concat([head, payload]);
}

test('the frames of one read reach the HTTP/2 session as one buffer; large reads frame by frame', async () => {
  const turn = () => new Promise((r) => setImmediate(r));
  const feed = new ReadFeed();
  const rewriter = new Http2AuthorityRewriter(feed as unknown as net.Socket);
  const pushed: Buffer[] = [];
  rewriter.on('data', (b: Buffer) => pushed.push(b));
  await turn();
  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
  const settings = frame(0x4, 0, 0, Buffer.alloc(0));
  const headers = frame(0x1, 0x4, 1, encodeHeaderBlock([{ name: ':authority', value: '/run/x.sock' }, { name: ':path', value: VERSION }]));
  const data = frame(0x0, 0x1, 1, Buffer.from([0, 0, 0, 0, 0]));
  feed.emit('data', Buffer.concat([preface, settings, headers, data]));
  await turn();
  assert.equal(pushed.length, 1);
  const rewritten = frame(0x1, 0x4, 1, encodeHeaderBlock([{ name: ':authority', value: 'localhost' }, { name: ':path', value: VERSION }]));
  assert.deepEqual(pushed[0], Buffer.concat([preface, settings, rewritten, data]));
  assert.equal(rewriter.rewrittenCount, 1);

  // A read of a body larger than the join limit: its frames are handed on as they are.
  pushed.length = 0;
  const big = [frame(0x0, 0, 3, Buffer.alloc(16384, 1)), frame(0x0, 0, 3, Buffer.alloc(16384, 2)), frame(0x0, 0x1, 3, Buffer.alloc(10, 3))];
  feed.emit('data', Buffer.concat(big));
  await turn();
  assert.deepEqual(pushed, big);

  // A frame split across reads waits for its end; what came complete before it goes on.
  pushed.length = 0;
  const ping = frame(0x6, 0, 0, Buffer.alloc(8, 7));
  const tail = frame(0x0, 0x1, 5, Buffer.alloc(20, 9));
  feed.emit('data', Buffer.concat([ping, tail.subarray(0, 12)]));
  await turn();
  assert.deepEqual(pushed, [ping]);
  feed.emit('data', tail.subarray(12));
  await turn();
  assert.deepEqual(pushed, [ping, tail]);
  rewriter.destroy();
});
