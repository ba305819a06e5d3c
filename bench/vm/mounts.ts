/**
 * The mounts phase of `npm run bench -- vm`: kubelet sends mounts with every container (#12), and
 * vmlet gives them to a warm VM by bind-mounting them into the per-VM directory its virtiofs
 * shares export (a cold VM gets the same shares at define). This phase measures Run + Create +
 * Start with kubelet's two usual mounts (kubeletMounts in pods.ts) against the same without
 * mounts, on a warm VM and on a cold one, in the same run: per round five pods, interleaved
 * (warm/none, warm/2, warm with one block volume, cold/none, cold/2), so the machine's load drifts
 * over all cases alike. The block volume (#22) is a 64 MiB loop device the bench makes per pod
 * (untimed) and passes in CreateContainer's devices, as kubelet passes a PVC with volumeMode Block;
 * a warm VM gets it hot-plugged through vmlet's QMP socket (src/container/warm/adopt.ts).
 * Warm pods run on the main daemon (after the bench waits, untimed, for an idle warm VM); cold
 * ones on a second daemon with `--vm-warm-pool 0`. Each pod is removed right after Start (no boot:
 * vmlet's share is what is measured). After Start the bench checks that each mount is bound in the
 * VM's export directory and reads the RSS of the VM's virtiofsd processes.
 */
import { mkdir, readdir, readFile, rename, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { summarize } from '../lib/stats.js';
import { kubeletMounts, vmCreateContainerRequest, vmPodName, vmPodSandboxConfig, type CriMount } from './pods.js';
import type { BenchDaemon } from '../lib/daemon.js';

export type VmKind = 'warm' | 'cold';

export interface MountCase {
  vm: VmKind;
  mounts: 0 | 2;
  /** One 64 MiB raw block volume in CreateContainer's devices. */
  blockVolumes: 0 | 1;
}

/** One round's pods, in the order they run. */
export const MOUNT_CASES: readonly MountCase[] = [
  { vm: 'warm', mounts: 0, blockVolumes: 0 },
  { vm: 'warm', mounts: 2, blockVolumes: 0 },
  { vm: 'warm', mounts: 0, blockVolumes: 1 },
  { vm: 'cold', mounts: 0, blockVolumes: 0 },
  { vm: 'cold', mounts: 2, blockVolumes: 0 },
];

/** The virtiofsd processes libvirt started for one VM (one per share, each a parent and its sandboxed child). */
export interface VirtiofsdReading {
  processes: number;
  /** Sum of VmRSS over them. */
  rssKiB: number;
  /** Sum of Pss (smaps_rollup): shared pages divided among the processes mapping them. */
  pssKiB: number;
  /** Sum of Private_Clean + Private_Dirty (USS): what these processes alone hold. */
  privateKiB: number;
}

export interface MountsSample extends MountCase {
  name: string;
  round: number;
  /** The container's VM was a warm one (adopted). */
  gotWarm?: boolean;
  warmWaitMs?: number;
  runMs?: number;
  createMs?: number;
  startMs?: number;
  vmletMs?: number;
  /** Mount points found in the VM's export directory after Create (each CRI mount is one). */
  boundEntries?: number;
  virtiofsd?: VirtiofsdReading;
  error?: string;
}

export interface MountsResult {
  rounds: number;
  samples: MountsSample[];
  /** Why a case was not measured (e.g. --warm-pool 0: no warm VMs). */
  skipped: string[];
  error?: string;
}

export function caseLabel(c: MountCase): string {
  return `${c.vm} VM, ${c.mounts === 0 ? 'no mounts' : `${c.mounts} mounts`}${c.blockVolumes > 0 ? `, ${c.blockVolumes} block volume` : ''}`;
}

export interface MountCaseRow {
  label: string;
  n: number;
  runMs: number;
  createMs: number;
  startMs: number;
  share: ReturnType<typeof summarize>;
  /** Pods of the case that did not get the VM kind they were meant to (a warm pod that went cold): left out of the numbers. */
  wrongKind: number;
  virtiofsdRssKiB: number[];
  virtiofsdPssKiB: number[];
  virtiofsdPrivateKiB: number[];
}

/** Per case: medians of the three calls, the share's summary, and the virtiofsd readings. Pure. */
export function mountCaseRows(samples: readonly MountsSample[]): MountCaseRow[] {
  return MOUNT_CASES.map((c) => {
    const done = samples.filter((s) => s.vm === c.vm && s.mounts === c.mounts && (s.blockVolumes ?? 0) === c.blockVolumes && s.error === undefined && s.vmletMs !== undefined);
    // A warm pod that got a cold VM (no idle warm VM at its Run after all) is counted apart, not in the case's numbers.
    const ok = done.filter((s) => s.gotWarm === (c.vm === 'warm'));
    const pick = (f: (s: MountsSample) => number | undefined) => ok.map(f).filter((v): v is number => v !== undefined && Number.isFinite(v));
    return {
      label: caseLabel(c),
      n: ok.length,
      runMs: summarize(pick((s) => s.runMs)).median,
      createMs: summarize(pick((s) => s.createMs)).median,
      startMs: summarize(pick((s) => s.startMs)).median,
      share: summarize(pick((s) => s.vmletMs)),
      wrongKind: done.length - ok.length,
      virtiofsdRssKiB: pick((s) => s.virtiofsd?.rssKiB),
      virtiofsdPssKiB: pick((s) => s.virtiofsd?.pssKiB),
      virtiofsdPrivateKiB: pick((s) => s.virtiofsd?.privateKiB),
    };
  });
}

/**
 * A pod's `/etc/hosts` and its service-account token volume (projected: `token`, `namespace`,
 * `ca.crt`, the token 0600) in the `..data` symlink layout of kubelet's atomic writer.
 */
export async function writeKubeletVolumes(dir: string): Promise<{ hostsFile: string; tokenDir: string }> {
  const hostsFile = join(dir, 'etc-hosts');
  const tokenDir = join(dir, 'volumes', 'kubernetes.io~projected', 'kube-api-access-bench');
  const data = join(tokenDir, '..2026_01_01_00_00_00.000000001');
  await mkdir(data, { recursive: true });
  await writeFile(hostsFile, '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n', { mode: 0o644 });
  await writeFile(join(data, 'token'), 'eyJhbGciOiJSUzI1NiJ9.bench.token', { mode: 0o600 });
  await writeFile(join(data, 'namespace'), 'vmlet-bench', { mode: 0o644 });
  await writeFile(join(data, 'ca.crt'), '-----BEGIN CERTIFICATE-----\nbench\n-----END CERTIFICATE-----\n', { mode: 0o644 });
  await symlink('..2026_01_01_00_00_00.000000001', join(tokenDir, '..data_tmp'));
  await rename(join(tokenDir, '..data_tmp'), join(tokenDir, '..data'));
  for (const key of ['token', 'namespace', 'ca.crt']) await symlink(`..data/${key}`, join(tokenDir, key));
  return { hostsFile, tokenDir };
}

/** Mount points strictly under `dir` (this process's view; the bench runs in the host's mount namespace). */
export async function mountPointsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .map((l) => (l.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p.startsWith(`${dir}/`));
}

/** The virtiofsd processes serving `<volumesDir>/<containerId>/…`, with their summed RSS and PSS. */
export async function readVirtiofsd(volumesDir: string, containerId: string): Promise<VirtiofsdReading> {
  const prefix = `source=${volumesDir}/${containerId}/`;
  const out: VirtiofsdReading = { processes: 0, rssKiB: 0, pssKiB: 0, privateKiB: 0 };
  for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
    try {
      const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
      if (!argv[0]?.endsWith('/virtiofsd') || !argv.some((a) => a.startsWith(prefix))) continue;
      const status = await readFile(`/proc/${pid}/status`, 'utf8');
      const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
      out.processes++;
      out.rssKiB += Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
      out.pssKiB += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? NaN);
      out.privateKiB += Number(/^Private_Clean:\s+(\d+)/m.exec(rollup)?.[1] ?? NaN) + Number(/^Private_Dirty:\s+(\d+)/m.exec(rollup)?.[1] ?? NaN);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

export interface MountsPhaseContext {
  /** The main daemon (warm pool on) and the cold one (`--vm-warm-pool 0`); either may be missing. */
  warmDaemon?: BenchDaemon;
  coldDaemon?: BenchDaemon;
  dir: string;
  tag: string;
  imageUrl: string;
  memoryMiB: number;
  rounds: number;
  signal: AbortSignal;
  now: () => number;
  /** A new 64 MiB loop device for pod `name` (untimed); the bench detaches it at cleanup. */
  blockVolume: (name: string) => Promise<string>;
  /** Untimed wait for an idle warm VM of the main daemon; returns how long it took. */
  waitForWarmVm: () => Promise<number>;
  /** The container's libvirt domain name. */
  domainNameOf: (daemon: BenchDaemon, containerId: string) => Promise<string>;
  /** Sandbox ids and domain names the bench's cleanup must know about. */
  onSandbox: (id: string) => void;
  onDomain: (name: string) => void;
  step: (text: string) => void;
}

/** Runs `rounds` rounds of MOUNT_CASES; a pod's failure is recorded and ends the phase. */
export async function runMountsPhase(ctx: MountsPhaseContext): Promise<MountsResult> {
  const result: MountsResult = { rounds: ctx.rounds, samples: [], skipped: [] };
  const cases = MOUNT_CASES.filter((c) => {
    const daemon = c.vm === 'warm' ? ctx.warmDaemon : ctx.coldDaemon;
    if (!daemon) result.skipped.push(`${caseLabel(c)}: ${c.vm === 'warm' ? 'no warm pool (--warm-pool 0)' : 'no cold daemon'}`);
    return daemon !== undefined;
  });
  try {
    for (let round = 0; round < ctx.rounds; round++) {
      for (const c of cases) {
        if (ctx.signal.aborted) throw new Error('interrupted');
        const sample: MountsSample = { ...c, round, name: vmPodName(ctx.tag, `${c.vm[0]}${c.mounts}${c.blockVolumes > 0 ? 'b' : ''}r`, round) };
        result.samples.push(sample);
        try {
          await onePod(ctx, c.vm === 'warm' ? ctx.warmDaemon! : ctx.coldDaemon!, sample);
        } catch (err) {
          sample.error = err instanceof Error ? err.message : String(err);
          throw err;
        }
      }
      const last = result.samples.slice(-cases.length);
      ctx.step(`mounts round ${round + 1}/${ctx.rounds}: ${last.map((s) => `${caseLabel(s)} ${s.vmletMs!.toFixed(0)} ms`).join(', ')}`);
    }
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
  }
  return result;
}

async function onePod(ctx: MountsPhaseContext, daemon: BenchDaemon, sample: MountsSample): Promise<void> {
  const podDir = join(ctx.dir, 'mount-pods', sample.name);
  const logDirectory = join(podDir, 'logs');
  await mkdir(logDirectory, { recursive: true });
  let mounts: CriMount[] = [];
  if (sample.mounts > 0) {
    const { hostsFile, tokenDir } = await writeKubeletVolumes(podDir);
    mounts = kubeletMounts(hostsFile, tokenDir);
  }
  const podConfig = vmPodSandboxConfig({ name: sample.name, uid: randomUUID(), logDirectory }, ctx.tag, new Date().toISOString());
  const devices = sample.blockVolumes > 0 ? [{ container_path: '/dev/benchpvc', host_path: await ctx.blockVolume(sample.name), permissions: 'mrw' }] : [];
  if (sample.vm === 'warm') sample.warmWaitMs = await ctx.waitForWarmVm();
  let t = ctx.now();
  const run = await daemon.client.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config: podConfig });
  sample.runMs = ctx.now() - t;
  ctx.onSandbox(run.pod_sandbox_id);
  let containerId: string | undefined;
  try {
    t = ctx.now();
    const request = vmCreateContainerRequest(run.pod_sandbox_id, podConfig, ctx.imageUrl, ctx.memoryMiB, mounts);
    if (devices.length > 0) (request.config as Record<string, unknown>).devices = devices;
    const created = await daemon.client.call<{ container_id: string }>('CreateContainer', request);
    sample.createMs = ctx.now() - t;
    containerId = created.container_id;
    t = ctx.now();
    await daemon.client.call('StartContainer', { container_id: containerId });
    sample.startMs = ctx.now() - t;
    sample.vmletMs = sample.runMs + sample.createMs + sample.startMs;
    const domain = await ctx.domainNameOf(daemon, containerId);
    ctx.onDomain(domain);
    sample.gotWarm = domain.startsWith('vmlet-warm-');
    const exportDir = join(daemon.dirs.stateDir, 'volumes', containerId);
    const points = await mountPointsUnder(exportDir);
    // The read-only share's own mount (ro/ over ro-stage/) is there for every VM; each mount is an
    // entry `<share>/<index>` (a read-only one shows in ro-stage/ and, by propagation, in ro/).
    const expected = mounts.map((m, i) => join(exportDir, m.readonly ? 'ro' : 'rw', String(i)));
    sample.boundEntries = expected.filter((p) => points.includes(p)).length;
    if (sample.boundEntries !== mounts.length) throw new Error(`${sample.name}: ${sample.boundEntries} of ${mounts.length} mounts bound in ${exportDir} (mount points there: ${points.join(', ') || 'none'})`);
    sample.virtiofsd = await readVirtiofsd(join(daemon.dirs.stateDir, 'volumes'), containerId);
  } finally {
    if (containerId) {
      await daemon.client.call('StopContainer', { container_id: containerId, timeout: '0' });
      await daemon.client.call('RemoveContainer', { container_id: containerId });
    }
    await daemon.client.call('StopPodSandbox', { pod_sandbox_id: run.pod_sandbox_id });
    await daemon.client.call('RemovePodSandbox', { pod_sandbox_id: run.pod_sandbox_id });
  }
  // RemoveContainer after a StopContainer whose destroy is still finishing removes the VM's files
  // (volumes included) right after that destroy, not before it answers (src/container/remove.ts).
  const exportDir = join(daemon.dirs.stateDir, 'volumes', containerId);
  const deadline = ctx.now() + RELEASE_WAIT_MS;
  let left = await mountPointsUnder(exportDir);
  while (left.length > 0 && ctx.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    left = await mountPointsUnder(exportDir);
  }
  if (left.length > 0) throw new Error(`${sample.name}: mounts left ${RELEASE_WAIT_MS / 1000} s after RemoveContainer: ${left.join(', ')}`);
}

/** How long after RemoveContainer the VM's export mounts may take to go (the destroy finishing first). */
const RELEASE_WAIT_MS = 60_000;
