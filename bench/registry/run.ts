/**
 * `npm run bench -- registry [--size-mib 256] [--rounds 3]`: containerDisk pull throughput from a
 * loopback docker-registry against `skopeo copy` of the same image to a local dir, in the same
 * run, with CPU seconds per GiB. vmlet's pull runs in this process through the real ImageStore
 * (download, sha256 of the layer, gunzip, untar, sha256 of the disk, qemu-img probe, commit);
 * skopeo's copy verifies the blob digests and writes the compressed blobs. The registry's own
 * CPU is not counted for either.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageStore } from '../../src/image/store.js';
import { buildImage, skopeoPush, startRegistry, writeLayout } from '../../test/helpers/registry.js';

interface Sample {
  tool: 'vmlet' | 'skopeo';
  seconds: number;
  cpuSeconds: number;
}

function usage(): string {
  return 'usage: npm run bench -- registry [--size-mib N (default 256; 1024 for the 1 GiB figure)] [--rounds N (default 3)]\n';
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

export async function runRegistryBench(argv: readonly string[]): Promise<number> {
  let sizeMib = 256;
  let rounds = 3;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      process.stdout.write(usage());
      return 0;
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
    process.stderr.write(`building a ${sizeMib} MiB containerDisk…\n`);
    const image = await buildImage([{ entries: [{ name: 'disk/disk.img', content: disk }] }]);
    const layerBytes = image.layers[0]!.blob.length;
    await writeLayout(join(work, 'layout'), '1', [{ image }]);
    await skopeoPush(registry, join(work, 'layout'), '1', 'bench/disk:1');
    const name = `${registry.host}/bench/disk:1`;

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
      if (rec.size !== BigInt(size)) throw new Error(`pulled ${rec.size} bytes, expected ${size}`);
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
      process.stderr.write(`round ${r + 1}/${rounds}: vmlet ${seconds.toFixed(2)} s, skopeo ${sSeconds.toFixed(2)} s\n`);
    }

    const gib = layerBytes / 2 ** 30;
    const summary = (tool: Sample['tool']) => {
      const s = samples.filter((x) => x.tool === tool);
      const secs = s.map((x) => x.seconds).sort((a, b) => a - b);
      const median = secs[Math.floor(secs.length / 2)]!;
      const cpu = s.reduce((a, x) => a + x.cpuSeconds, 0) / s.length;
      return { medianSeconds: median, mibPerSecond: layerBytes / 2 ** 20 / median, cpuSecondsPerGiB: cpu / gib };
    };
    const vm = summary('vmlet');
    const sk = summary('skopeo');
    const result = { benchmark: 'registry', sizeMib, diskBytes: size, layerBytes, rounds, samples, vmlet: vm, skopeo: sk, ratio: vm.mibPerSecond / sk.mibPerSecond };
    const resultsDir = join(process.cwd(), 'bench', 'results');
    await mkdir(resultsDir, { recursive: true });
    const file = join(resultsDir, `registry-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
    const line = (n: string, s: ReturnType<typeof summary>): string =>
      `${n.padEnd(8)} ${s.medianSeconds.toFixed(2).padStart(8)} s ${s.mibPerSecond.toFixed(1).padStart(9)} MiB/s ${s.cpuSecondsPerGiB.toFixed(2).padStart(8)} CPU s/GiB`;
    process.stdout.write(
      `containerDisk pull, ${sizeMib} MiB disk (${(layerBytes / 2 ** 20).toFixed(1)} MiB gzip layer), loopback registry, median of ${rounds}\n` +
        `${line('vmlet', vm)}\n${line('skopeo', sk)}\n` +
        `vmlet / skopeo rate: ${(result.ratio * 100).toFixed(0)}%  (vmlet also gunzips, untars, hashes the disk and probes it; skopeo keeps the blob compressed)\n` +
        `results: ${file}\n`,
    );
    return 0;
  } finally {
    await registry.close();
    await rm(work, { recursive: true, force: true });
  }
}
