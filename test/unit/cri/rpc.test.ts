import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CriServer } from '../../../src/cri/server.js';
import { loadCriServices } from '../../../src/cri/proto.js';
import type { CallContext, HandlerMap } from '../../../src/cri/rpc.js';
import { silentLogger } from '../../../src/log.js';

type Unary = (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: any) => void) => grpc.ClientUnaryCall;

async function withServer(handlers: HandlerMap, fn: (call: (method: string, req: object, opts?: grpc.CallOptions) => Promise<any>) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vmlet-rpc-'));
  const socketPath = join(dir, 'vmlet.sock');
  const server = new CriServer({ socketPath, logger: silentLogger, runtimeHandlers: handlers, imageHandlers: {} });
  await server.start();
  const Ctor = grpc.makeGenericClientConstructor(loadCriServices().runtimeService, 'RuntimeService');
  const client = new Ctor(`unix://${socketPath}`, grpc.credentials.createInsecure()) as unknown as Record<string, Unary> & grpc.Client;
  try {
    await fn((method, req, opts = {}) => new Promise((resolve, reject) => client[method]!.call(client, req, opts, (err, res) => (err ? reject(err) : resolve(res)))));
  } finally {
    client.close();
    await server.stop(1000);
    rmSync(dir, { recursive: true, force: true });
  }
}

const settle = () => new Promise((r) => setTimeout(r, 50));

test('an answered call never aborts its signal (grpc-js reports "cancelled" after every call)', async () => {
  const contexts: CallContext[] = [];
  const aborts: unknown[] = [];
  await withServer(
    {
      Version: async (_req, ctx) => {
        contexts.push(ctx);
        ctx.signal.addEventListener('abort', () => aborts.push(ctx.signal.reason));
        return { version: '0.1.0', runtime_name: 'vmlet', runtime_version: '1', runtime_api_version: 'v1' };
      },
      Status: async () => {
        throw new Error('boom');
      },
    },
    async (call) => {
      for (let i = 0; i < 3; i++) assert.equal((await call('Version', {})).runtime_name, 'vmlet');
      await assert.rejects(call('Status', {}), (err: grpc.ServiceError) => err.code === grpc.status.INTERNAL);
      await settle();
    },
  );
  assert.equal(contexts.length, 3);
  assert.ok(contexts.every((c) => !c.signal.aborted));
  assert.deepEqual(aborts, []);
});

test('a call whose deadline passes while its handler runs aborts the handler signal', async () => {
  let seen: CallContext | undefined;
  let released!: () => void;
  const handlerDone = new Promise<void>((r) => (released = r));
  await withServer(
    {
      Version: (_req, ctx) => {
        seen = ctx;
        return new Promise((resolve) => {
          ctx.signal.addEventListener('abort', () => {
            resolve({ version: 'late' });
            released();
          });
        });
      },
    },
    async (call) => {
      await assert.rejects(call('Version', {}, { deadline: Date.now() + 200 }), (err: grpc.ServiceError) => err.code === grpc.status.DEADLINE_EXCEEDED);
      await Promise.race([handlerDone, new Promise((_, rej) => setTimeout(() => rej(new Error('handler signal never aborted')), 5000))]);
    },
  );
  assert.ok(seen?.signal.aborted);
  assert.match(String((seen?.signal.reason as Error).message), /cancelled/);
});

test('the CRI server keeps no channelz records (per-connection bookkeeping for a service vmlet does not serve)', async () => {
  const servers = () =>
    new Promise<unknown[]>((resolve) =>
      (grpc.getChannelzHandlers().GetServers as unknown as (call: object, cb: (err: unknown, res: { server: unknown[] }) => void) => void)(
        { request: { max_results: '100', start_server_id: '0' } },
        (_err, res) => resolve(res.server),
      ),
    );
  await withServer({ Version: async () => ({ version: '0.1.0', runtime_name: 'vmlet' }) }, async (call) => {
    assert.equal((await call('Version', {})).runtime_name, 'vmlet');
    assert.deepEqual(await servers(), []);
  });
  // The probe itself works: a default grpc-js server is listed.
  const plain = new grpc.Server();
  try {
    assert.equal((await servers()).length, 1);
  } finally {
    plain.forceShutdown();
  }
});
