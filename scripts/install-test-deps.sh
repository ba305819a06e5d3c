#!/usr/bin/env bash
# Debian packages only the tests need (not the product): containerd + runc for the delegate
# test (test/integration/delegate/), systemd's systemd-analyze for the unit check, a real OCI
# registry with skopeo to push to it and htpasswd for its auth (test/integration/image/registry*),
# curl and python3 for the pull bench's floor and file server (bench/pull/).
# The test guests' build scripts (test-guests/) install what they need themselves. Idempotent.
set -euo pipefail
packages=(containerd runc systemd busybox-static gcc libc6-dev docker-registry skopeo apache2-utils curl python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  printf 'vmlet-test-deps: installing %s\n' "${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
