import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { BlockPipe } from '../../../src/image/block_pipe.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Feeds `data` in chunks of uneven sizes (so chunks straddle block borders), honouring backpressure. */
async function feed(pipe: BlockPipe, data: Buffer): Promise<number> {
  let waits = 0;
  const sizes = [1, 4095, 70_000, 3, 65_536, 12_345];
  for (let off = 0, i = 0; off < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, data.length - off);
    const wait = pipe.write(data.subarray(off, off + n));
    if (wait) {
      waits++;
      await wait;
    }
    off += n;
  }
  return waits;
}

for (const hashOn of ['main', 'worker'] as const) {
  test(`${hashOn}: digest, byte count and sink positions equal the input's, whatever the chunking`, async () => {
    const data = randomBytes(1_000_003);
    const copy = Buffer.alloc(data.length);
    const positions: number[] = [];
    const pipe = new BlockPipe({
      hashOn,
      blockBytes: 64 * 1024,
      blocks: 3,
      sink: async (block, position) => {
        positions.push(position);
        await new Promise((r) => setTimeout(r, 1)); // keep blocks busy so the ring fills
        block.copy(copy, position);
      },
    });
    const waits = await feed(pipe, data);
    const result = await pipe.end();
    assert.equal(result.sha256, sha(data));
    assert.equal(result.bytes, data.length);
    assert.ok(copy.equals(data), 'the sink saw every byte at its position');
    assert.deepEqual(
      positions.sort((a, b) => a - b),
      Array.from({ length: Math.ceil(data.length / 65_536) }, (_, i) => i * 65_536),
    );
    assert.ok(waits > 0, 'a full ring made the writer wait');
  });

  test(`${hashOn}: an empty stream hashes to the empty digest`, async () => {
    const pipe = new BlockPipe({ hashOn });
    assert.deepEqual(await pipe.end(), { sha256: sha(Buffer.alloc(0)), bytes: 0 });
  });

  test(`${hashOn}: a failing sink fails the writer and end(); destroy waits for sinks in flight`, async () => {
    let inFlight = 0;
    let calls = 0;
    const pipe = new BlockPipe({
      hashOn,
      blockBytes: 1024,
      blocks: 2,
      sink: async () => {
        inFlight++;
        calls++;
        await new Promise((r) => setTimeout(r, 5));
        inFlight--;
        if (calls === 2) throw new Error('disk full');
      },
    });
    await assert.rejects(feed(pipe, randomBytes(64 * 1024)), /disk full/);
    await assert.rejects(pipe.end(), /disk full/);
    await pipe.destroy();
    assert.equal(inFlight, 0);
  });

  test(`${hashOn}: destroy mid-stream rejects a waiting writer and leaves no sink running`, async () => {
    let inFlight = 0;
    const pipe = new BlockPipe({
      hashOn,
      blockBytes: 1024,
      blocks: 1,
      sink: async () => {
        inFlight++;
        await new Promise((r) => setTimeout(r, 20));
        inFlight--;
      },
    });
    assert.equal(pipe.write(Buffer.alloc(1024)), undefined);
    const blocked = pipe.write(Buffer.alloc(10));
    assert.ok(blocked, 'the only block is busy');
    const destroyed = pipe.destroy();
    await assert.rejects(blocked, /destroyed/);
    await destroyed;
    assert.equal(inFlight, 0);
    await assert.rejects(Promise.resolve(pipe.write(Buffer.alloc(1))), /destroyed/);
  });
}
