/**
 * What the VM bench asks for: a pod sandbox config and a container config shaped like kubelet's
 * (its labels and annotations, DNS config, log directory, memory limit), snake_case as the proto
 * loader keeps it. Pure: ids, times and paths are passed in.
 */

import { BENCH_NAMESPACE, RUN_LABEL } from '../lib/pods.js';

export const CONTAINER_NAME = 'vm';
/** Relative to the sandbox's log directory, as kubelet sets it (`<name>/<attempt>.log`). */
export const CONTAINER_LOG_PATH = 'vm/0.log';

export interface VmPod {
  /** Pod name, also the guest's hostname (a DNS label). */
  name: string;
  uid: string;
  /** The sandbox's log directory (the bench's temp dir stands in for /var/log/pods). */
  logDirectory: string;
}

export function vmPodName(tag: string, label: string, index: number): string {
  return `vmbench-${tag}-${label}${index}`;
}

const DNS = {
  servers: ['198.18.0.10'],
  searches: [`${BENCH_NAMESPACE}.svc.cluster.local`, 'svc.cluster.local', 'cluster.local'],
  options: ['ndots:5'],
};

export function vmPodSandboxConfig(pod: VmPod, tag: string, seenIso: string): Record<string, unknown> {
  return {
    metadata: { name: pod.name, uid: pod.uid, namespace: BENCH_NAMESPACE, attempt: 0 },
    hostname: pod.name,
    log_directory: pod.logDirectory,
    dns_config: DNS,
    labels: {
      'io.kubernetes.pod.name': pod.name,
      'io.kubernetes.pod.namespace': BENCH_NAMESPACE,
      'io.kubernetes.pod.uid': pod.uid,
      app: 'vmlet-bench-vm',
      [RUN_LABEL]: tag,
    },
    annotations: { 'kubernetes.io/config.seen': seenIso, 'kubernetes.io/config.source': 'api' },
    linux: {
      cgroup_parent: `/kubepods/burstable/pod${pod.uid}`,
      security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } },
    },
  };
}

/** A CRI mount as the proto loader takes it (snake_case). */
export interface CriMount {
  container_path: string;
  host_path: string;
  readonly: boolean;
}

/**
 * The two mounts kubelet sends with nearly every pod, shaped as it makes them: the pod's
 * `/etc/hosts` (a single file, writable) and the service-account token (a projected volume: a
 * read-only directory with kubelet's `..data` symlink layout). `hostsFile`/`tokenDir` are where
 * the bench wrote them (writeKubeletVolumes).
 */
export function kubeletMounts(hostsFile: string, tokenDir: string): CriMount[] {
  return [
    { container_path: '/etc/hosts', host_path: hostsFile, readonly: false },
    { container_path: '/var/run/secrets/kubernetes.io/serviceaccount', host_path: tokenDir, readonly: true },
  ];
}

/** A CreateContainerRequest for the pod's one VM: the image by URL, a memory limit, the log path, the mounts if any. */
export function vmCreateContainerRequest(sandboxId: string, podConfig: Record<string, unknown>, imageUrl: string, memoryMiB: number, mounts: readonly CriMount[] = []): Record<string, unknown> {
  const pod = podConfig.metadata as { name: string; uid: string; namespace: string };
  const bytes = String(memoryMiB * 1024 * 1024);
  return {
    pod_sandbox_id: sandboxId,
    config: {
      metadata: { name: CONTAINER_NAME, attempt: 0 },
      image: { image: imageUrl },
      log_path: CONTAINER_LOG_PATH,
      labels: {
        'io.kubernetes.container.name': CONTAINER_NAME,
        'io.kubernetes.pod.name': pod.name,
        'io.kubernetes.pod.namespace': pod.namespace,
        'io.kubernetes.pod.uid': pod.uid,
      },
      annotations: { 'io.kubernetes.container.restartCount': '0', 'io.kubernetes.container.terminationMessagePath': '/dev/termination-log' },
      envs: [{ key: 'VMLET_BENCH', value: '1' }],
      linux: { resources: { memory_limit_in_bytes: bytes } },
      ...(mounts.length > 0 ? { mounts } : {}),
    },
    sandbox_config: podConfig,
  };
}
