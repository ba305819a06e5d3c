/**
 * The container image names critest v1.26.1 pulls (pkg/validate/consts.go, pkg/framework/util.go
 * and the specs' own constants at tag v1.26.1), and the Virtlet-style translation file that maps
 * each to a VM disk image on the harness's loopback HTTP server.
 *
 * vmlet runs VM disk images, not OCI images, so every name whose container is started maps to the
 * busybox test guest, nginx's to the guest's nginx variant (Debian's nginx serving Debian's default
 * page on port 80, as critest's nginx image does); the image-manager specs only pull, inspect and
 * remove, and compare image ids between names, so they get tiny qcow2 files, distinct where the
 * spec needs distinct ids.
 */
import { stringify } from 'yaml';

const STAGING = 'gcr.io/k8s-staging-cri-tools/';
const E2E = 'registry.k8s.io/e2e-test-images/';

/** Names whose containers critest starts: the test guest boots for each. */
export const GUEST_IMAGES: readonly string[] = [
  `${E2E}busybox:1.29-2`, // the default container image of every container spec
  `${E2E}httpd:2.4.39-4`, // multiple containers
  `${E2E}nonewprivs:1.3`, // security context NoNewPrivs
  `${STAGING}hostnet-nginx-amd64`, // port-forward in the host network
  `${STAGING}test-image-predefined-group`, // supplemental groups of the image's user
];

/** Names whose containers must serve nginx's page on port 80: the guest's nginx variant boots. */
export const NGINX_IMAGES: readonly string[] = [
  `${E2E}nginx:1.14-2`, // networking (port mapping) and streaming (port-forward) web server
];

/**
 * Names the image-manager specs pull, grouped by the disk each maps to. Names in one group share an
 * image id (test-image-tags:1..3 must be one image with three tags); groups are distinct files.
 */
export const TINY_IMAGE_GROUPS: readonly (readonly string[])[] = [
  [`${STAGING}test-image-tag:test`],
  [`${STAGING}test-image-latest`],
  // Pulled by digest: that digest names an OCI manifest, which no VM disk image can match.
  [`${STAGING}test-image-digest@sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf`],
  [`${STAGING}test-image-tag:all`],
  [`${STAGING}test-image-1:latest`],
  [`${STAGING}test-image-2:latest`],
  [`${STAGING}test-image-3:latest`],
  [`${STAGING}test-image-tags:1`, `${STAGING}test-image-tags:2`, `${STAGING}test-image-tags:3`],
  // The image user spec pulls these, reads their status and removes them by id: were they the
  // guest, that would remove the image the container specs run beside it.
  [`${STAGING}test-image-user-uid`],
  [`${STAGING}test-image-user-username`],
  [`${STAGING}test-image-user-uid-group`],
  [`${STAGING}test-image-user-username-group`],
];

/** A translation matches the name without a digest (vmlet verifies the digest after download). */
function translationName(image: string): string {
  const at = image.indexOf('@');
  return at < 0 ? image : image.slice(0, at);
}

/**
 * The translation config (YAML, Virtlet's format): guest names to `guestUrl`, nginx names to
 * `nginxUrl`, the tiny-image group i to `tinyUrl(i)`.
 */
export function translationConfig(guestUrl: string, nginxUrl: string, tinyUrl: (group: number) => string): string {
  const translations = [
    ...GUEST_IMAGES.map((name) => ({ name, url: guestUrl })),
    ...NGINX_IMAGES.map((name) => ({ name, url: nginxUrl })),
    ...TINY_IMAGE_GROUPS.flatMap((group, i) => group.map((name) => ({ name: translationName(name), url: tinyUrl(i) }))),
  ];
  return stringify({ translations });
}
