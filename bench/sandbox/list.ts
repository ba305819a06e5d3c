/**
 * ListPodSandbox against a store of many sandboxes. Building hundreds of real sandboxes would take
 * minutes, so the store is written directly: stopped sandbox records (NOTREADY, no network) in the
 * format of src/sandbox/records.ts, through the product's RecordStore, before a daemon starts over
 * them. ListPodSandbox reads only serve's records, so what it does per call is the same as with
 * live sandboxes; only the READY/NOTREADY mix differs.
 */
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { RecordStore } from '../../src/store/record_store.js';
import { silentLogger } from '../../src/log.js';
import type { SandboxRecord } from '../../src/sandbox/records.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { REPO_ROOT, type BenchDaemon } from '../lib/daemon.js';
import type { CriRuntimeClient } from '../lib/cri_client.js';
import { GROUP_LABEL, podIdentity, stoppedSandboxRecord } from './pods.js';

/** Writes `count` stopped sandbox records under `stateDir`; returns their ids. */
export async function writeStoppedSandboxes(stateDir: string, count: number, tag: string): Promise<string[]> {
  const store = new RecordStore<SandboxRecord>(join(stateDir, 'sandboxes'), silentLogger);
  await store.load();
  const ids: string[] = [];
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  const seen = new Date().toISOString();
  const batch = 16;
  for (let start = 0; start < count; start += batch) {
    const writes: Promise<void>[] = [];
    for (let i = start; i < Math.min(count, start + batch); i++) {
      const id = randomBytes(32).toString('hex');
      ids.push(id);
      const pod = podIdentity(tag, 'list', i, randomUUID());
      writes.push(store.put(stoppedSandboxRecord(id, pod, tag, i, nowNs - BigInt(count - i) * 1_000_000_000n, seen)));
    }
    await Promise.all(writes);
  }
  return ids;
}

export interface ListCase {
  name: string;
  request: Record<string, unknown>;
  expectedItems: number;
}

export function listCases(records: number, group: number, groups: number): ListCase[] {
  return [
    { name: 'no filter', request: {}, expectedItems: records },
    {
      name: `label ${GROUP_LABEL}=g${group}`,
      request: { filter: { label_selector: { [GROUP_LABEL]: `g${group}` } } },
      expectedItems: Math.floor(records / groups) + (group < records % groups ? 1 : 0),
    },
  ];
}

export interface ListTiming {
  name: string;
  items: number;
  /** Size of one response on the wire (protobuf, before HTTP/2 framing). */
  responseBytes: number;
  /** Round trip with the response decoded into objects: what a Node client sees. */
  clientMs: number[];
  /** Round trip with the response left as bytes: without this client's decoding cost. */
  rawMs: number[];
  /** The daemon's handler time (its debug "rpc" line; response encoding comes after it). */
  serverMs: number[];
  /** grpc-js encoding / decoding of one such response, timed in the bench process. */
  encodeMs: number[];
  decodeMs: number[];
  /** The same call against the bare grpc-js reference server answering this very response. */
  reference?: { clientMs: number[]; rawMs: number[]; responseBytes: number };
}

/**
 * `warmup` untimed calls, then `calls` timed rounds of one decoded and one raw call, one at a
 * time; checks the size of every decoded answer. Then times the codec on the last response.
 */
export async function timeListCase(
  daemon: BenchDaemon,
  c: ListCase,
  calls: number,
  warmup: number,
): Promise<{ timing: ListTiming; lastResponse: object }> {
  const decoded = async () => {
    const res = await daemon.client.call<{ items: unknown[] }>('ListPodSandbox', c.request, 30_000);
    if (res.items.length !== c.expectedItems) {
      throw new Error(`ListPodSandbox (${c.name}) returned ${res.items.length} items, expected ${c.expectedItems}`);
    }
    return res;
  };
  for (let i = 0; i < warmup; i++) {
    await decoded();
    await daemon.client.callRaw('ListPodSandbox', c.request, 30_000);
  }
  const mark = daemon.logs.length;
  const clientMs: number[] = [];
  const rawMs: number[] = [];
  let bytes: Buffer = Buffer.alloc(0);
  let last: object = {};
  for (let i = 0; i < calls; i++) {
    let t = performance.now();
    last = await decoded();
    clientMs.push(performance.now() - t);
    t = performance.now();
    bytes = await daemon.client.callRaw('ListPodSandbox', c.request, 30_000);
    rawMs.push(performance.now() - t);
  }
  await daemon.waitForLines(mark, (l) => l.msg === 'rpc' && l.method === 'ListPodSandbox', 2 * calls);
  const serverMs = daemon.logs
    .slice(mark)
    .filter((l) => l.msg === 'rpc' && l.method === 'ListPodSandbox')
    .map((l) => Number(l.durationMs));
  const codec = daemon.client.codec('ListPodSandbox');
  const encodeMs: number[] = [];
  const decodeMs: number[] = [];
  for (let i = 0; i < Math.min(calls, 50); i++) {
    let t = performance.now();
    codec.encode(last);
    encodeMs.push(performance.now() - t);
    t = performance.now();
    codec.decode(bytes);
    decodeMs.push(performance.now() - t);
  }
  return {
    timing: { name: c.name, items: c.expectedItems, responseBytes: bytes.length, clientMs, rawMs, serverMs, encodeMs, decodeMs },
    lastResponse: last,
  };
}

/** Decoded and raw round trips, alternating, against any server that answers ListPodSandbox. */
export async function timeRoundTrips(
  client: CriRuntimeClient,
  request: object,
  calls: number,
  warmup: number,
): Promise<{ clientMs: number[]; rawMs: number[]; responseBytes: number }> {
  for (let i = 0; i < warmup; i++) {
    await client.call('ListPodSandbox', request, 30_000);
    await client.callRaw('ListPodSandbox', request, 30_000);
  }
  const clientMs: number[] = [];
  const rawMs: number[] = [];
  let responseBytes = 0;
  for (let i = 0; i < calls; i++) {
    let t = performance.now();
    await client.call('ListPodSandbox', request, 30_000);
    clientMs.push(performance.now() - t);
    t = performance.now();
    responseBytes = (await client.callRaw('ListPodSandbox', request, 30_000)).length;
    rawMs.push(performance.now() - t);
  }
  return { clientMs, rawMs, responseBytes };
}

/**
 * Starts the bare grpc-js reference server (list_reference_server.ts) on `socket`, answering
 * `response`; resolves once it listens. Closing its stdin ends it.
 */
export async function startReferenceServer(args: readonly string[], socket: string, responseFile: string, response: object): Promise<ChildProcess> {
  await writeFile(responseFile, JSON.stringify(response));
  const child = spawn(process.execPath, [...args, '--socket', socket, '--response', responseFile], {
    cwd: REPO_ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString('utf8')));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString('utf8')));
  const deadline = Date.now() + 60_000;
  while (!out.includes('ready')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the reference server did not start: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return child;
}
