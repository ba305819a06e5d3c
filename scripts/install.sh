#!/usr/bin/env bash
# Installs what vmlet needs on Debian 12 (as root), builds it, configures libvirt for VM pods,
# and makes sure libvirtd and virtlogd are running. Idempotent: run it as often as you like.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'vmlet-install: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }

# --- Node.js ------------------------------------------------------------------------------
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  log "Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))"
  exit 1
fi

# --- Debian packages ----------------------------------------------------------------------
packages=(
  libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils ovmf-
  containernetworking-plugins iproute2 nftables iptables ebtables genisoimage
  busybox-static util-linux openssl ca-certificates libxml2-utils
  gcc libc6-dev
)
# Test-only: a real OCI registry, skopeo to push images to it, htpasswd for its auth.
if [ "${VMLET_INSTALL_TEST_DEPS:-0}" = 1 ]; then
  packages+=(docker-registry skopeo apache2-utils)
fi
missing=()
for p in "${packages[@]}"; do
  case "$p" in *-) continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the user QEMU runs as (--qemu-user; docs/vmwrapper.md) ---------------------------------
# A system user and group of its own, no home, no shell, no other group: the launcher drops QEMU
# to it after entering the pod's netns, and vmlet gives it exactly the VM's files.
if ! getent passwd vmlet-qemu >/dev/null; then
  log "creating system user vmlet-qemu"
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
    --comment 'vmlet QEMU processes' vmlet-qemu
fi

# --- npm dependencies and build ------------------------------------------------------------
stamp=node_modules/.vmlet-lock-hash
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
log "building"
npm run --silent build

# --- libvirt: qemu.conf for QEMU in pod namespaces, then libvirtd and virtlogd -----------------
./scripts/configure-libvirt.sh
./scripts/start-libvirt.sh
