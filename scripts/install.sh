#!/usr/bin/env bash
# Installs what vmlet needs on Debian 12 (as root), builds it, configures libvirt for VM pods,
# and makes sure libvirtd and virtlogd are running. Idempotent: run it as often as you like.
#
# Usage: install.sh [--service] [--uninstall] [--root DIR]
#   --service    also install vmlet as a systemd service: /etc/systemd/system/vmlet.service,
#                /usr/local/bin/vmlet, a default /etc/vmlet/config.yaml (kept if present) and the
#                default CNI network (only when the CNI conf dir holds none); enabled and started
#                when systemd runs the machine.
#   --uninstall  remove what an install added (files listed in its manifest) and restore
#                qemu.conf's earlier settings; VMs, pods and vmlet's state dir are left alone.
#   --root DIR   act on files under DIR instead of / (no packages, no build, no daemons): for
#                tests and image builds.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

log() { printf 'vmlet-install: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

service=0
uninstall=0
root=
while [ $# -gt 0 ]; do
  case "$1" in
    --service) service=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    --root) [ $# -ge 2 ] || die "--root needs a directory"; root=$(cd "$2" && pwd); shift 2 ;;
    *) die "unknown argument: $1 (see the usage at the top of $0)" ;;
  esac
done

[ "$(id -u)" = 0 ] || [ -n "$root" ] || die "run as root"

manifest_dir=$root/var/lib/vmlet-install
manifest=$manifest_dir/manifest
qemu_conf=$root/etc/libvirt/qemu.conf
systemd_pid1=0
[ -z "$root" ] && [ "$(ps -o comm= -p 1)" = systemd ] && systemd_pid1=1

# --- uninstall -------------------------------------------------------------------------------
if [ "$uninstall" = 1 ]; then
  if [ "$systemd_pid1" = 1 ] && [ -f /etc/systemd/system/vmlet.service ]; then
    systemctl disable --now vmlet.service || true
  fi
  if [ -f "$manifest" ]; then
    entries=$(tac "$manifest")
    rm -f -- "$manifest"
    # Newest first: files, then the directories install created (only if left empty).
    while read -r kind path; do
      case "$kind" in
        file) rm -f -- "$path" && log "removed $path" ;;
        dir) rmdir -- "$path" 2>/dev/null && log "removed $path/" || true ;;
      esac
    done <<< "$entries"
  fi
  if [ "$systemd_pid1" = 1 ]; then systemctl daemon-reload; fi
  if [ -f "$qemu_conf" ]; then ./scripts/configure-libvirt.sh --qemu-conf "$qemu_conf" --remove; fi
  log "uninstalled"
  exit 0
fi

# --- packages, npm dependencies, build (not under --root) ----------------------------------
if [ -z "$root" ]; then
  node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$node_major" -lt 20 ]; then
    log "Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))"
    exit 1
  fi

  packages=(
    libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils ovmf-
    containernetworking-plugins iproute2 nftables iptables ebtables genisoimage
    busybox-static util-linux openssl ca-certificates libxml2-utils
    gcc libc6-dev procps
  )
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

  # The user QEMU runs as (--qemu-user; docs/vmwrapper.md): a system user and group of its own, no
  # home, no shell, no other group; the launcher drops QEMU to it after entering the pod's netns.
  if ! getent passwd vmlet-qemu >/dev/null; then
    log "creating system user vmlet-qemu"
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
      --comment 'vmlet QEMU processes' vmlet-qemu
  fi

  stamp=node_modules/.vmlet-lock-hash
  want=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing npm dependencies"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" > "$stamp"
  fi
  log "building"
  npm run --silent build
fi

# --- the service: every file created is recorded, so --uninstall removes exactly those ---------
record() { printf '%s %s\n' "$1" "$2" >> "$manifest"; }
recorded() { [ -f "$manifest" ] && grep -qxF "$1 $2" "$manifest"; }
make_dir() {
  # Creates DIR and its missing parents, recording each one it created.
  local d=$1 missing=()
  while [ ! -d "$d" ]; do missing=("$d" "${missing[@]}"); d=$(dirname "$d"); done
  [ "${#missing[@]}" -gt 0 ] || return 0
  mkdir -p -m 0755 "${missing[@]}"
  for d in "${missing[@]}"; do recorded dir "$d" || record dir "$d"; done
}
# put_file PATH MODE: writes stdin to PATH when PATH does not exist or is ours.
put_file() {
  local path=$1 mode=$2
  if [ -e "$path" ] && ! recorded file "$path"; then log "keeping the existing $path"; cat > /dev/null; return; fi
  make_dir "$(dirname "$path")"
  cat > "$path.vmlet-new"
  chmod "$mode" "$path.vmlet-new"
  mv -f "$path.vmlet-new" "$path"
  recorded file "$path" || record file "$path"
}

if [ "$service" = 1 ]; then
  if [ ! -f "$manifest" ]; then make_dir "$manifest_dir"; fi
  # The manifest dir is recorded first, so it is the last thing uninstall removes.
  bin=$root/usr/local/bin/vmlet
  if [ -e "$bin" ] || [ -L "$bin" ]; then
    recorded file "$bin" || log "keeping the existing $bin"
  else
    make_dir "$(dirname "$bin")"
    ln -s "$repo/bin/vmlet" "$bin"
    record file "$bin"
  fi
  put_file "$root/etc/systemd/system/vmlet.service" 0644 < "$repo/deploy/systemd/vmlet.service"
  put_file "$root/etc/vmlet/config.yaml" 0644 < "$repo/deploy/systemd/config.yaml"
  cni_dir=$root/etc/cni/net.d
  make_dir "$cni_dir"
  # default-cni.sh writes 10-vmlet.conflist only into a conf dir without any network config.
  had_conf=$(find "$cni_dir" -maxdepth 1 \( -name '*.conf' -o -name '*.conflist' -o -name '*.json' \) ! -path "$cni_dir/10-vmlet.conflist" | head -1)
  ./scripts/default-cni.sh "$cni_dir"
  if [ -z "$had_conf" ] && [ -f "$cni_dir/10-vmlet.conflist" ]; then recorded file "$cni_dir/10-vmlet.conflist" || record file "$cni_dir/10-vmlet.conflist"; fi
  log "installed the vmlet service (manifest: $manifest)"
fi

# --- libvirt: qemu.conf for QEMU in pod namespaces, then libvirtd and virtlogd -----------------
if [ -n "$root" ]; then
  if [ -f "$qemu_conf" ]; then ./scripts/configure-libvirt.sh --qemu-conf "$qemu_conf" --no-restart; fi
  exit 0
fi
./scripts/configure-libvirt.sh
if [ "$systemd_pid1" = 1 ]; then
  systemctl enable --now virtlogd.service libvirtd.service
  if [ "$service" = 1 ]; then
    systemctl daemon-reload
    systemctl enable --now vmlet.service
  fi
else
  ./scripts/start-libvirt.sh
  [ "$service" = 0 ] || log "no systemd here: start vmlet with 'vmlet serve --config /etc/vmlet/config.yaml' or a supervisor of your choice"
fi
