/**
 * The peer bench's ContainerStatus rows: one created (not started) container on each runtime, the
 * busybox test guest's VM on vmlet (pulled through its CRI from a loopback server) and the local
 * pause image on containerd, then ContainerStatus over the bench's client and `crictl inspect`,
 * interleaved. Everything it makes it removes, failed or not.
 */
import { CriImageClient } from '../vm/image_client.js';
import { buildTestGuest, serveGuest } from '../vm/guest_image.js';
import { vmCreateContainerRequest } from '../vm/pods.js';
import type { CriRuntimeClient } from '../lib/cri_client.js';
import { now } from '../lib/harness.js';
import type { RuntimeSamples } from './report.js';

export interface ContainerRowsSide {
  name: 'vmlet' | 'containerd';
  client: CriRuntimeClient;
  socket: string;
  samples: RuntimeSamples;
}

export interface ContainerRowsContext {
  sides: readonly ContainerRowsSide[];
  /** The image containerd creates its container from (already imported). */
  containerdImage: string;
  podConfig: () => Record<string, unknown>;
  calls: number;
  crictlCalls: number;
  /** Runs crictl with these arguments against a side. */
  crictl: (side: ContainerRowsSide, args: string[]) => Promise<unknown>;
  quiet: (phase: string) => Promise<void>;
  step: (text: string) => void;
  checkAbort: () => void;
}

/** The guest's memory: the busybox test guest does not boot with 64 MiB (bench/vm/README.md, Scale). */
const GUEST_MEMORY_MIB = 96;

export async function containerStatusRows(ctx: ContainerRowsContext): Promise<void> {
  const vmlet = ctx.sides.find((s) => s.name === 'vmlet')!;
  ctx.step('ContainerStatus: a created container on each side (the test guest VM on vmlet, the pause image on containerd)');
  const guest = await serveGuest(await buildTestGuest());
  const images = new CriImageClient(vmlet.socket);
  const made: { side: ContainerRowsSide; sandboxId: string; containerId?: string }[] = [];
  let pulled = false;
  let measured = false;
  try {
    await images.call('PullImage', { image: { image: guest.url } });
    pulled = true;
    const ids = new Map<ContainerRowsSide, string>();
    for (const side of ctx.sides) {
      const config = ctx.podConfig();
      const { pod_sandbox_id: sandboxId } = await side.client.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config });
      const entry: (typeof made)[number] = { side, sandboxId };
      made.push(entry);
      const image = side.name === 'vmlet' ? guest.url : ctx.containerdImage;
      const { container_id: id } = await side.client.call<{ container_id: string }>('CreateContainer', vmCreateContainerRequest(sandboxId, config, image, GUEST_MEMORY_MIB));
      entry.containerId = id;
      ids.set(side, id);
    }
    await ctx.quiet('container');
    for (let i = 0; i < ctx.calls; i++) {
      for (const side of ctx.sides) {
        const t = now();
        await side.client.call('ContainerStatus', { container_id: ids.get(side) });
        side.samples.containerStatus.push(now() - t);
      }
    }
    for (let i = 0; i < ctx.crictlCalls; i++) {
      ctx.checkAbort();
      for (const side of ctx.sides) {
        const t = now();
        await ctx.crictl(side, ['inspect', ids.get(side)!]);
        side.samples.crictlInspect.push(now() - t);
      }
    }
    measured = true;
  } finally {
    const errors: string[] = [];
    const attempt = async (what: string, work: () => Promise<unknown>) => {
      try {
        await work();
      } catch (err) {
        errors.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    for (const m of made) {
      if (m.containerId !== undefined) await attempt(`${m.side.name} RemoveContainer`, () => m.side.client.call('RemoveContainer', { container_id: m.containerId }));
      await attempt(`${m.side.name} StopPodSandbox`, () => m.side.client.call('StopPodSandbox', { pod_sandbox_id: m.sandboxId }));
      await attempt(`${m.side.name} RemovePodSandbox`, () => m.side.client.call('RemovePodSandbox', { pod_sandbox_id: m.sandboxId }));
    }
    if (pulled) await attempt('vmlet RemoveImage', () => images.call('RemoveImage', { image: { image: guest.url } }));
    images.close();
    await guest.close();
    // After a failure of the rows themselves, that failure is the one the caller gets.
    if (measured && errors.length > 0) throw new Error(`removing the ContainerStatus rows' pods: ${errors.join('; ')}`);
  }
}
