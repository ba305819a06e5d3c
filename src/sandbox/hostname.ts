/**
 * The guest hostname of a pod whose config gives none. kubelet always sends one (the pod's
 * spec.hostname, else its name cut to 63 characters without a trailing '-' or '.'); other CRI
 * clients (critest, crictl with a bare config) send none, and their pod names need not be valid
 * hostnames ("create-PodSandbox-for-container-<uuid>" is 68 characters with capitals).
 */

/** A DNS-1123 label, and what sethostname(2) takes: 64 bytes with the terminating NUL. */
export const HOSTNAME_MAX_LENGTH = 63;

/** Used when nothing of the pod name survives (a name of only '_', '.', '-', …). */
export const FALLBACK_HOSTNAME = 'pod';

/**
 * kubelet's rule (a name cut to 63 characters, then trailing '-' and '.' trimmed) applied to a
 * name that may not be a Kubernetes object name: lowercased, every character outside [a-z0-9-]
 * turned into '-' (a label has no dots: cloud-init would read a dotted name as an FQDN), leading
 * '-' dropped. The result is always a valid DNS-1123 label.
 */
export function hostnameFromPodName(podName: string): string {
  const label = podName
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/^-+/, '')
    .slice(0, HOSTNAME_MAX_LENGTH)
    .replace(/-+$/, '');
  return label === '' ? FALLBACK_HOSTNAME : label;
}
