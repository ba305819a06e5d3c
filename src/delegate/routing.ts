/**
 * Which side answers a CRI call when vmlet delegates container pods: the pure decisions, in one
 * place so that new kinds of VM images (OCI registries, #21) extend one function.
 *
 * - A pod is a VM pod when its runtime handler is `vmlet` or it carries Virtlet's annotation
 *   `kubernetes.io/target-runtime: virtlet.cloud`; every other pod belongs to the delegate.
 * - An id belongs to vmlet when vmlet's own records know it (they persist across restarts);
 *   every other id is the delegate's. vmlet never keeps a copy of the delegate's state.
 * - An image reference is a VM image when its name says so (an http(s) URL, Virtlet's
 *   `virtlet.cloud/` prefix, a name the translation configs know, a name under one of the
 *   configured VM image prefixes), when the pull is for a VM pod (runtime handler or pod
 *   annotation), or when vmlet's store holds it; everything else goes to the delegate. Without a
 *   delegate there is no routing: every call is vmlet's.
 */

export type Side = 'vmlet' | 'delegate';

export const VM_RUNTIME_HANDLER = 'vmlet';
export const VIRTLET_RUNTIME_ANNOTATION = 'kubernetes.io/target-runtime';
export const VIRTLET_RUNTIME_VALUE = 'virtlet.cloud';
export const VIRTLET_IMAGE_PREFIX = 'virtlet.cloud/';

export function isVmPod(runtimeHandler: string | undefined, annotations: Record<string, string> | undefined | null): boolean {
  if (runtimeHandler === VM_RUNTIME_HANDLER) return true;
  return annotations?.[VIRTLET_RUNTIME_ANNOTATION] === VIRTLET_RUNTIME_VALUE;
}

/** RunPodSandbox: the new pod's side. */
export function sandboxSide(runtimeHandler: string | undefined, annotations: Record<string, string> | undefined | null): Side {
  return isVmPod(runtimeHandler, annotations) ? 'vmlet' : 'delegate';
}

/**
 * A call on an existing id. An empty or missing id stays with vmlet, whose validation answers
 * INVALID_ARGUMENT; an id vmlet does not know is the delegate's (which answers NOT_FOUND for
 * an id nobody knows).
 */
export function idSide(id: string | undefined | null, vmletKnows: (id: string) => boolean): Side {
  if (!id) return 'vmlet';
  return vmletKnows(id) ? 'vmlet' : 'delegate';
}

/** What vmlet can tell about an image reference. */
export interface ImageFacts {
  /** vmlet's store holds an image by this id or name. */
  held(ref: string): boolean;
  /** vmlet's translation configs map this name to a URL. */
  translated(name: string): Promise<boolean>;
}

/** Whether the name itself marks a VM image, without looking anything up. */
export function isVmImageName(name: string): boolean {
  return /^https?:\/\//i.test(name) || name.startsWith(VIRTLET_IMAGE_PREFIX);
}

/**
 * Whether `ref` lies under one of the VM image prefixes (`--vm-image-prefixes`). A prefix matches
 * at a name boundary only: `quay.io/containerdisks` matches `quay.io/containerdisks/fedora:40`
 * and `quay.io/containerdisks:1`, not `quay.io/containerdisks-other/x`. Names are compared as
 * written (no docker.io normalisation), so a prefix is written as the pod specs write images.
 */
export function matchesVmImagePrefix(ref: string, prefixes: readonly string[]): string | undefined {
  for (const raw of prefixes) {
    const prefix = raw.endsWith('/') ? raw.slice(0, -1) : raw;
    if (prefix === '') continue;
    if (ref === prefix) return raw;
    if (!ref.startsWith(prefix)) continue;
    const next = ref[prefix.length]!;
    // After a bare host, ':' would start a port (another host); after a repository, a tag.
    if (next === '/' || (prefix.includes('/') && (next === ':' || next === '@'))) return raw;
  }
  return undefined;
}

/** Context a PullImage carries about the pod it is for. */
export interface PullContext {
  /** ImageSpec.runtime_handler (runtime-class aware pulls). */
  runtimeHandler?: string;
  /** The pod's annotations from PullImageRequest.sandbox_config. */
  podAnnotations?: Record<string, string> | null;
}

/** PullImage, ImageStatus, RemoveImage and a filtered ListImages: the side an image reference goes to. */
export async function imageSide(
  ref: string | undefined | null,
  facts: ImageFacts,
  pull: PullContext = {},
  vmImagePrefixes: readonly string[] = [],
): Promise<Side> {
  // vmlet validates a missing name.
  if (!ref) return 'vmlet';
  if (isVmImageName(ref)) return 'vmlet';
  if (matchesVmImagePrefix(ref, vmImagePrefixes) !== undefined) return 'vmlet';
  if (isVmPod(pull.runtimeHandler, pull.podAnnotations)) return 'vmlet';
  if (facts.held(ref)) return 'vmlet';
  return (await facts.translated(ref)) ? 'vmlet' : 'delegate';
}
