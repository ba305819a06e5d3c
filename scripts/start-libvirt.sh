#!/usr/bin/env bash
# Makes sure virtlogd and libvirtd are running: through systemd when it is PID 1, otherwise
# started directly as daemons. Waits until libvirtd answers.
set -euo pipefail
log() { printf 'vmlet-libvirt: %s\n' "$*" >&2; }

answers() { timeout 10 virsh -q -c qemu:///system version >/dev/null 2>&1; }

if [ "$(ps -o comm= -p 1)" = systemd ]; then
  systemctl start virtlogd libvirtd
else
  if ! pgrep -x virtlogd >/dev/null; then
    log "starting virtlogd"
    rm -f /run/virtlogd.pid
    virtlogd -d
  fi
  if ! answers; then
    if pid=$(pgrep -x libvirtd); then
      log "libvirtd (pid $pid) does not answer; waiting for it"
    else
      log "starting libvirtd"
      rm -f /run/libvirtd.pid
      libvirtd -d
    fi
  fi
fi
for _ in $(seq 1 120); do
  answers && exit 0
  sleep 0.5
done
log "libvirtd did not answer within 60 s"
exit 1
