/**
 * What the bench asks for: pod sandbox configs shaped like kubelet's (labels and annotations
 * kubelet sets, DNS config, a port mapping), and sandbox records in the format of
 * src/sandbox/records.ts for the ListPodSandbox store. Pure (ids and times are passed in).
 */
import { sandboxKey, type SandboxRecord } from '../../src/sandbox/records.js';
import { BENCH_NAMESPACE, RUN_LABEL } from '../lib/pods.js';

/** The label the ListPodSandbox filter selects on: record i carries group g(i mod GROUPS). */
export const GROUP_LABEL = 'bench.vmlet.io/group';
export const GROUPS = 10;

export interface PodIdentity {
  name: string;
  uid: string;
}

export function podIdentity(tag: string, phase: string, index: number, uid: string): PodIdentity {
  return { name: `bench-${tag}-${phase}-${index}`, uid };
}

function kubeletLabels(pod: PodIdentity, tag: string, group: number): Record<string, string> {
  return {
    'io.kubernetes.pod.name': pod.name,
    'io.kubernetes.pod.namespace': BENCH_NAMESPACE,
    'io.kubernetes.pod.uid': pod.uid,
    app: 'vmlet-bench',
    [RUN_LABEL]: tag,
    [GROUP_LABEL]: `g${group}`,
  };
}

function kubeletAnnotations(seenIso: string): Record<string, string> {
  return { 'kubernetes.io/config.seen': seenIso, 'kubernetes.io/config.source': 'api' };
}

const DNS = {
  servers: ['198.18.0.10'],
  searches: [`${BENCH_NAMESPACE}.svc.cluster.local`, 'svc.cluster.local', 'cluster.local'],
  options: ['ndots:5'],
};

/** A RunPodSandboxRequest.config as kubelet sends it (snake_case, as the proto loader keeps it). */
export function podSandboxConfig(pod: PodIdentity, tag: string, index: number, seenIso: string): Record<string, unknown> {
  return {
    metadata: { name: pod.name, uid: pod.uid, namespace: BENCH_NAMESPACE, attempt: 0 },
    hostname: pod.name,
    log_directory: `/var/log/pods/${BENCH_NAMESPACE}_${pod.name}_${pod.uid}`,
    dns_config: DNS,
    port_mappings: [{ protocol: 'TCP', container_port: 8080 }],
    labels: kubeletLabels(pod, tag, index % GROUPS),
    annotations: kubeletAnnotations(seenIso),
    linux: {
      cgroup_parent: `/kubepods/besteffort/pod${pod.uid}`,
      security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } },
    },
  };
}

/**
 * A stopped sandbox record (NOTREADY, no network, nothing pending) as serve persists it, for a
 * store that ListPodSandbox reads without any network ever having been built.
 */
export function stoppedSandboxRecord(id: string, pod: PodIdentity, tag: string, index: number, createdAtNs: bigint, seenIso: string): SandboxRecord {
  const metadata = { name: pod.name, uid: pod.uid, namespace: BENCH_NAMESPACE, attempt: 0 };
  return {
    id,
    key: sandboxKey(metadata),
    metadata,
    state: 'NOTREADY',
    createdAtNs: createdAtNs.toString(),
    hostname: pod.name,
    logDirectory: `/var/log/pods/${BENCH_NAMESPACE}_${pod.name}_${pod.uid}`,
    runtimeHandler: '',
    labels: kubeletLabels(pod, tag, index % GROUPS),
    annotations: kubeletAnnotations(seenIso),
    dns: DNS,
    portMappings: [{ protocol: 'tcp', containerPort: 8080, hostPort: 0, hostIP: '' }],
  };
}
