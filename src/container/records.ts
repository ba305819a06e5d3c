/** A container (one VM) as persisted under <state-dir>/containers. Times are decimal ns strings. */
export type ContainerState = 'CREATED' | 'RUNNING' | 'EXITED' | 'UNKNOWN';

export interface ContainerResources {
  cpuPeriod?: string;
  cpuQuota?: string;
  cpuShares?: string;
  memoryLimitInBytes?: string;
}

export interface ContainerRecord {
  id: string;
  sandboxId: string;
  /** sandboxId/name/attempt: two containers may not share it (ALREADY_EXISTS). */
  key: string;
  metadata: { name: string; attempt: number };
  /** The image as named at create time, and its id. */
  image: string;
  imageRef: string;
  command: string[];
  args: string[];
  workingDir: string;
  envs: { key: string; value: string }[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  mounts: { container_path: string; host_path: string; readonly: boolean }[];
  /** CRI devices as given (block devices: block_devices/plan.ts); absent in older records. */
  devices?: { container_path: string; host_path: string; permissions: string }[];
  /**
   * Image volumes (CRI Mount.image): each a read-only VM disk of the image's blob, its serial from
   * container_path; absent in older records. imageRef holds the image while the container exists.
   */
  imageMounts?: ImageMount[];
  /** Absolute CRI log path ('' when kubelet asked for none). */
  logPath: string;
  resources: ContainerResources;
  state: ContainerState;
  createdAtNs: string;
  startedAtNs?: string;
  finishedAtNs?: string;
  exitCode?: number;
  reason?: string;
  message?: string;
  domainName: string;
  domainUuid: string;
  /** Private directory holding the overlay, the seed ISO and the raw console. */
  dir: string;
  vm: { memoryBytes: number; vcpus: number; domainType: 'kvm' | 'qemu' };
  /** The domain was a warm VM (src/container/warm/pool.ts): started paused, so Start resumes it. */
  warm?: boolean;
  /**
   * The VM boots from this persistent root device (src/container/block_devices/), seen by the
   * guest from `offset` for `size` bytes; there is no overlay, and Remove leaves the device's
   * contents alone (it only gives the node back its owner).
   */
  persistentRoot?: PersistentRootRef;
}

export interface PersistentRootRef {
  device: string;
  offset: number;
  size: number;
}

export interface ImageMount {
  container_path: string;
  /** The image as named in the mount, and the id it resolved to at create time. */
  image: string;
  imageRef: string;
}

export function containerKey(sandboxId: string, name: string, attempt: number): string {
  return `${sandboxId}/${name}/${attempt}`;
}
