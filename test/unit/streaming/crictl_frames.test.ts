/**
 * Bytes recorded from the real crictl v1.26.1 (kubelet's client-go SPDY code) talking to vmlet's
 * streaming server (test/fixtures/streaming/, captured on loopback with tcpdump): what crictl sent
 * for `exec -i`, `exec -it`, `attach -i` and `port-forward`, and what vmlet answered and crictl
 * accepted. The client's header blocks are compressed by Go's zlib with its own copy of the SPDY/3
 * dictionary, so decoding them here checks our dictionary and framing against an independent
 * implementation, not against our own encoder.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duplex } from 'node:stream';
import { SPDY3_DICTIONARY } from '../../../src/streaming/spdy/dictionary.js';
import { parseFrames, SYN_STREAM } from '../../../src/streaming/spdy/frames.js';
import { SpdySession, type SpdyStream } from '../../../src/streaming/spdy/session.js';

const DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures', 'streaming');

function fixture(name: string): { head: string; body: Buffer } {
  const raw = readFileSync(join(DIR, name));
  const end = raw.indexOf('\r\n\r\n') + 4;
  assert.ok(end > 4, `${name} starts with an HTTP head`);
  return { head: raw.subarray(0, end).toString('latin1'), body: raw.subarray(end) };
}

function adler32(b: Buffer): number {
  let a = 1;
  let s = 0;
  for (const byte of b) {
    a = (a + byte) % 65521;
    s = (s + a) % 65521;
  }
  return ((s << 16) | a) >>> 0;
}

interface Seen {
  headers: Record<string, string[]>;
  data: string;
  ended: boolean;
}

/** Feeds recorded bytes to a SpdySession of `role`; returns the streams it saw and what it wrote back. */
async function replay(body: Buffer, role: 'server' | 'client'): Promise<{ streams: Seen[]; replies: Buffer; session: SpdySession }> {
  const written: Buffer[] = [];
  const transport = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      written.push(chunk);
      cb();
    },
  });
  const session = new SpdySession(transport, { role });
  const streams: Seen[] = [];
  session.on('stream', (s: SpdyStream) => {
    const seen: Seen = { headers: s.headers, data: '', ended: false };
    streams.push(seen);
    s.on('data', (d: Buffer) => (seen.data += d.toString('latin1')));
    s.on('end', () => (seen.ended = true));
    if (role === 'server') void s.reply();
  });
  // Byte by byte in a few odd-sized pieces: frames split across reads must reassemble.
  for (let off = 0; off < body.length; off += 37) transport.push(body.subarray(off, off + 37));
  // Header blocks inflate asynchronously: wait until nothing has changed for 150 ms (a loaded
  // machine can take longer than any fixed wait), at most 10 s.
  const state = () => JSON.stringify([streams, written.reduce((n, b) => n + b.length, 0)]);
  let last = '';
  let quiet = 0;
  for (const deadline = Date.now() + 10_000; quiet < 3 && Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, 50));
    const now = state();
    quiet = now === last ? quiet + 1 : 0;
    last = now;
  }
  return { streams, replies: Buffer.concat(written), session };
}

test('the SPDY/3 dictionary is the one crictl (Go) compresses with: same Adler-32 in the zlib FDICT header', () => {
  const { body } = fixture('crictl-exec-stdin.client.bin');
  const first = parseFrames(body, 1 << 24).frames[0]!;
  assert.equal(first.kind, 'synStream');
  const block = (first as { headerBlock: Buffer }).headerBlock;
  assert.equal(block[0]! & 0x0f, 8, 'deflate');
  assert.ok(block[1]! & 0x20, 'FDICT set: a preset dictionary');
  assert.equal(block.readUInt32BE(2), adler32(SPDY3_DICTIONARY));
  assert.equal(SPDY3_DICTIONARY.length, 1423);
  assert.equal(body.readUInt16BE(2), SYN_STREAM);
});

test('crictl exec -i: upgrade offers v4..channel.k8s.io; error, stdin, stdout, stderr streams; stdin data then FIN', async () => {
  const { head, body } = fixture('crictl-exec-stdin.client.bin');
  assert.match(head, /^POST \/exec\/[A-Za-z0-9_-]+ HTTP\/1\.1\r\n/);
  assert.match(head, /Upgrade: SPDY\/3\.1\r\n/);
  assert.deepEqual([...head.matchAll(/X-Stream-Protocol-Version: (\S+)/g)].map((m) => m[1]), ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io']);
  const { streams, replies, session } = await replay(body, 'server');
  assert.deepEqual(streams.map((s) => s.headers), [{ streamtype: ['error'] }, { streamtype: ['stdin'] }, { streamtype: ['stdout'] }, { streamtype: ['stderr'] }]);
  assert.equal(streams[1]!.data, 'input\n');
  assert.equal(streams[1]!.ended, true);
  // The session echoed crictl's PING (id 1) after its four SYN_REPLYs.
  const answered = parseFrames(replies, 1 << 24).frames;
  assert.deepEqual(answered.map((f) => f.kind), ['synReply', 'synReply', 'synReply', 'synReply', 'ping']);
  session.close();
});

test('crictl exec -it: stdin, stdout and resize (no stderr with a tty); the first resize is a JSON TerminalSize', async () => {
  const { body } = fixture('crictl-exec-tty.client.bin');
  const { streams, session } = await replay(body, 'server');
  assert.deepEqual(streams.map((s) => s.headers.streamtype![0]), ['error', 'stdin', 'stdout', 'resize']);
  assert.deepEqual(JSON.parse(streams[3]!.data), { Width: 0, Height: 0 });
  session.close();
});

test('crictl attach -i: the same four streams as exec; stdin ends with a FIN data frame', async () => {
  const { head, body } = fixture('crictl-attach.client.bin');
  assert.match(head, /^POST \/attach\//);
  const { streams, session } = await replay(body, 'server');
  assert.deepEqual(streams.map((s) => s.headers.streamtype![0]), ['error', 'stdin', 'stdout', 'stderr']);
  assert.equal(streams[1]!.data, 'hello\n');
  assert.equal(streams[1]!.ended, true);
  session.close();
});

test('crictl port-forward: per connection an error stream (FIN at once) and a data stream, both with port and requestid', async () => {
  const { head, body } = fixture('crictl-portforward.client.bin');
  assert.match(head, /X-Stream-Protocol-Version: portforward\.k8s\.io\r\n/);
  const { streams, session } = await replay(body, 'server');
  assert.deepEqual(
    streams.map((s) => [s.headers.streamtype![0], s.headers.port![0], s.headers.requestid![0]]),
    [['error', '8080', '0'], ['data', '8080', '0'], ['error', '8080', '1'], ['data', '8080', '1'], ['error', '1', '2'], ['data', '1', '2']],
  );
  assert.match(streams[1]!.data, /^GET \/ HTTP\/1\.1\r\nHost: 127\.0\.0\.1:18080\r\n/);
  assert.ok(streams[0]!.ended, 'the client half-closes the error stream right away');
  session.close();
});

test('what vmlet sent and crictl accepted decodes: exec error status, attach output, port-forward data and per-stream error', async () => {
  const exec = await replaySent('crictl-exec-stdin.server.bin');
  assert.match(exec.head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  assert.match(exec.head, /X-Stream-Protocol-Version: v4\.channel\.k8s\.io\r\n/);
  const status = JSON.parse(exec.data.get(1)!);
  assert.equal(status.status, 'Failure');
  assert.match(status.message, /no guest agent answers/);

  const attach = await replaySent('crictl-attach.server.bin');
  assert.equal(attach.data.get(5), 'hello\r\n');
  assert.deepEqual(JSON.parse(attach.data.get(1)!), { metadata: {}, status: 'Success' });

  const pf = await replaySent('crictl-portforward.server.bin');
  assert.match(pf.data.get(3)!, /vmlet-guest s-guest\n$/);
  assert.match(pf.data.get(9)!, /^error forwarding port 1 to pod sandbox [0-9a-f]{64}: connecting to [0-9.]+:1 in the pod: connect ECONNREFUSED/);
  assert.deepEqual(pf.fin.sort((a, b) => a - b), [1, 3, 7, 9, 11]);
});

/** Decodes a server recording: data per stream id, the ids that got a FIN. */
async function replaySent(name: string): Promise<{ head: string; data: Map<number, string>; fin: number[] }> {
  const { head, body } = fixture(name);
  const { frames } = parseFrames(body, 1 << 24);
  const data = new Map<number, string>();
  const fin: number[] = [];
  for (const f of frames) {
    if (f.kind !== 'data') continue;
    data.set(f.streamId, (data.get(f.streamId) ?? '') + f.data.toString('latin1'));
    if (f.flags & 1) fin.push(f.streamId);
  }
  // The SYN_REPLY header blocks inflate with the dictionary, in order, as crictl inflated them.
  const { streams, session } = await replay(body, 'client');
  assert.deepEqual(streams, [], 'the server opens no streams');
  session.close();
  return { head, data, fin };
}
