/**
 * `npm run bench -- registry [--size-mib 256] [--rounds 3] [--layers gzip,uncompressed]`:
 * containerDisk pull throughput from a loopback docker-registry against `skopeo copy` of the same
 * image to a local dir, in the same run (rounds interleaved), for an image with a gzip layer and
 * one with an uncompressed layer, with CPU seconds per GiB of registry bytes. vmlet's pull runs
 * in this process through the real ImageStore (download, sha256 of the layer, gunzip, untar,
 * sha256 of the disk, fsync, qemu-img probe, commit) and the bench checks the image id is the
 * disk's sha256; skopeo's copy verifies the blob digests and writes the blobs as they are (a gzip
 * layer stays compressed). The registry's own CPU is not counted for either.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageStore } from '../../src/image/store.js';
import { buildImage, skopeoPush, startRegistry, writeLayout } from '../../test/helpers/registry.js';

interface Sample {
  tool: 'vmlet' | 'skopeo';
  seconds: number;
  cpuSeconds: number;
}

type LayerKind = 'gzip' | 'uncompressed';

function usage(): string {
  return 'usage: npm run bench -- registry [--size-mib N (default 256; 1024 for the 1 GiB figure)] [--rounds N (default 3)] [--layers gzip,uncompressed (default both)]\n';
}

/** CPU seconds of reaped children of this process (utime + stime from /proc/self/stat). */
async function childrenCpuSeconds(): Promise<number> {
  const stat = await readFile('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields after the comm: index 13 and 14 are cutime and cstime (fields 16 and 17 of proc(5)).
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 1 << 20, timeout: 1_800_000 }, (err, _out, stderr) => (err ? reject(new Error(`${cmd}: ${stderr || err.message}`)) : resolve()));
  });
}

interface Summary {
  medianSeconds: number;
  mbPerSecond: number;
  cpuSecondsPerGiB: number;
}

/** Rounds of (vmlet pull, skopeo copy) of one image, interleaved so both see the same machine load. */
async function measure(work: string, name: string, layer: LayerKind, size: number, diskId: string, layerBytes: number, rounds: number) {
  const samples: Sample[] = [];
  for (let r = 0; r < rounds; r++) {
    // vmlet: a fresh store each round, so every round downloads.
    const imageDir = join(work, `images-${r}`);
    const store = new ImageStore({ imageDir });
    await store.init();
    const c0 = selfCpuSeconds();
    const k0 = await childrenCpuSeconds();
    const t0 = process.hrtime.bigint();
    const rec = await store.pull(name);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpuSeconds = selfCpuSeconds() - c0 + ((await childrenCpuSeconds()) - k0);
    if (rec.size !== BigInt(size) || rec.id !== diskId) throw new Error(`pulled ${rec.id} (${rec.size} bytes), expected ${diskId} (${size} bytes)`);
    await store.close();
    await rm(imageDir, { recursive: true, force: true });
    samples.push({ tool: 'vmlet', seconds, cpuSeconds });

    const dest = join(work, `skopeo-${r}`);
    await mkdir(dest);
    const s0 = await childrenCpuSeconds();
    const t1 = process.hrtime.bigint();
    await run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${name}`, `dir:${dest}`]);
    const sSeconds = Number(process.hrtime.bigint() - t1) / 1e9;
    samples.push({ tool: 'skopeo', seconds: sSeconds, cpuSeconds: (await childrenCpuSeconds()) - s0 });
    await rm(dest, { recursive: true, force: true });
    process.stderr.write(`${layer} round ${r + 1}/${rounds}: vmlet ${seconds.toFixed(2)} s, skopeo ${sSeconds.toFixed(2)} s\n`);
  }
  const gib = layerBytes / 2 ** 30;
  const summary = (tool: Sample['tool']): Summary => {
    const s = samples.filter((x) => x.tool === tool);
    const secs = s.map((x) => x.seconds).sort((a, b) => a - b);
    const median = secs.length % 2 === 1 ? secs[(secs.length - 1) / 2]! : (secs[secs.length / 2 - 1]! + secs[secs.length / 2]!) / 2;
    const cpu = s.reduce((a, x) => a + x.cpuSeconds, 0) / s.length;
    return { medianSeconds: median, mbPerSecond: layerBytes / 1e6 / median, cpuSecondsPerGiB: cpu / gib };
  };
  const vmlet = summary('vmlet');
  const skopeo = summary('skopeo');
  return { layer, layerBytes, samples, vmlet, skopeo, ratio: vmlet.mbPerSecond / skopeo.mbPerSecond };
}

export async function runRegistryBench(argv: readonly string[]): Promise<number> {
  let sizeMib = 256;
  let rounds = 3;
  let layerKinds: LayerKind[] = ['gzip', 'uncompressed'];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      process.stdout.write(usage());
      return 0;
    }
    if (a === '--layers') {
      const kinds = (argv[++i] ?? '').split(',');
      if (kinds.length === 0 || !kinds.every((k): k is LayerKind => k === 'gzip' || k === 'uncompressed')) {
        process.stderr.write(`bad --layers ${argv[i]}\n${usage()}`);
        return 2;
      }
      layerKinds = [...new Set(kinds)];
      continue;
    }
    const v = Number(argv[++i]);
    if (a === '--size-mib' && Number.isInteger(v) && v >= 1 && v <= 16384) sizeMib = v;
    else if (a === '--rounds' && Number.isInteger(v) && v >= 1 && v <= 20) rounds = v;
    else {
      process.stderr.write(`bad option ${a}\n${usage()}`);
      return 2;
    }
  }
  const work = await mkdtemp(join(tmpdir(), 'vmlet-bench-registry-'));
  const registry = await startRegistry();
  try {
    // A raw disk: a boot-sector marker, then half random (incompressible) and half zeros, as a
    // real disk is partly empty. Gzip level 1 keeps the build quick.
    const size = sizeMib * 1024 * 1024;
    const disk = Buffer.alloc(size);
    disk.write('vmlet bench disk', 0);
    disk[510] = 0x55;
    disk[511] = 0xaa;
    for (let off = 512 * 1024; off < size; off += 1024 * 1024) randomBytes(512 * 1024).copy(disk, off);
    const diskId = `sha256:${createHash('sha256').update(disk).digest('hex')}`;
    const results = [];
    for (const layer of layerKinds) {
      process.stderr.write(`building a ${sizeMib} MiB containerDisk with a${layer === 'gzip' ? ' gzip' : 'n uncompressed'} layer…\n`);
      const image = await buildImage([{ entries: [{ name: 'disk/disk.img', content: disk }], gzip: layer === 'gzip' }]);
      const layerBytes = image.layers[0]!.blob.length;
      const repo = `bench/disk-${layer}`;
      await writeLayout(join(work, `layout-${layer}`), '1', [{ image }]);
      await skopeoPush(registry, join(work, `layout-${layer}`), '1', `${repo}:1`);
      await rm(join(work, `layout-${layer}`), { recursive: true, force: true });
      results.push(await measure(work, `${registry.host}/${repo}:1`, layer, size, diskId, layerBytes, rounds));
    }
    const result = { benchmark: 'registry', sizeMib, diskBytes: size, rounds, cpus: cpus().length, loadAverage: loadavg(), layers: results };
    const resultsDir = join(process.cwd(), 'bench', 'results');
    await mkdir(resultsDir, { recursive: true });
    const file = join(resultsDir, `registry-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
    const line = (n: string, s: Summary): string =>
      `  ${n.padEnd(8)} ${s.medianSeconds.toFixed(2).padStart(8)} s ${s.mbPerSecond.toFixed(1).padStart(9)} MB/s ${s.cpuSecondsPerGiB.toFixed(2).padStart(8)} CPU s/GiB`;
    let out = `containerDisk pull, ${sizeMib} MiB disk, loopback registry, median of ${rounds} interleaved rounds; MB/s of registry (layer) bytes; CPU s per GiB of layer bytes\n`;
    for (const r of results) {
      out +=
        `${r.layer} layer (${(r.layerBytes / 2 ** 20).toFixed(1)} MiB):\n${line('vmlet', r.vmlet)}\n${line('skopeo', r.skopeo)}\n` +
        `  vmlet / skopeo rate: ${(r.ratio * 100).toFixed(0)}% (target ≥ 90%: ${r.ratio >= 0.9 ? 'met' : 'NOT met'})${r.layer === 'gzip' ? '; vmlet also gunzips and writes the whole disk, skopeo keeps the blob compressed' : ''}\n`;
    }
    process.stdout.write(`${out}results: ${file}\n`);
    return 0;
  } finally {
    await registry.close();
    await rm(work, { recursive: true, force: true });
  }
}
