/** Taking a phase's VM pods down through the CRI, as kubelet does. */
import type { BenchDaemon } from '../lib/daemon.js';

export interface RemovablePod {
  sandboxId: string;
  containerId?: string;
  /** Named in a failure's message when set. */
  name?: string;
}

/**
 * StopContainer (timeout 0), RemoveContainer, StopPodSandbox and RemovePodSandbox of every pod,
 * four pods at a time to keep it short; `onRemoved` marks each pod that went. Every pod is tried;
 * the failures come out together, prefixed with `what`.
 */
export async function removeVmPods<P extends RemovablePod>(daemon: BenchDaemon, pods: readonly P[], what: string, onRemoved?: (pod: P) => void): Promise<void> {
  const queue = [...pods];
  const errors: string[] = [];
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let pod = queue.shift(); pod; pod = queue.shift()) {
        try {
          if (pod.containerId) {
            await daemon.client.call('StopContainer', { container_id: pod.containerId, timeout: '0' });
            await daemon.client.call('RemoveContainer', { container_id: pod.containerId });
          }
          await daemon.client.call('StopPodSandbox', { pod_sandbox_id: pod.sandboxId });
          await daemon.client.call('RemovePodSandbox', { pod_sandbox_id: pod.sandboxId });
          onRemoved?.(pod);
        } catch (err) {
          const text = err instanceof Error ? err.message : String(err);
          errors.push(pod.name === undefined ? text : `${pod.name}: ${text}`);
        }
      }
    }),
  );
  if (errors.length > 0) throw new Error(`${what}: ${errors.join('; ')}`);
}
