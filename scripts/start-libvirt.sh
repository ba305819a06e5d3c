#!/usr/bin/env bash
# Makes sure virtlogd and libvirtd are running: through systemd when it is PID 1, otherwise
# started directly as daemons. Waits until libvirtd answers.
set -euo pipefail
log() { printf 'vmlet-libvirt: %s\n' "$*" >&2; }

answers() { timeout 10 virsh -q -c qemu:///system version >/dev/null 2>&1; }

# Records that vmlet's own scripts started this libvirtd (pid + start time), in the marker the
# test suite reads: only a libvirtd started this way may be restarted by its reconnect test.
mark_started_by_us() {
  local pid stat rest
  for _ in $(seq 1 100); do [ -s /run/libvirtd.pid ] && break; sleep 0.1; done
  pid=$(cat /run/libvirtd.pid 2>/dev/null) || return 0
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0
  rest=${stat##*) }
  # shellcheck disable=SC2086
  set -- $rest
  mkdir -p /run/vmlet-test
  printf '{"pid":%s,"startTime":"%s"}\n' "$pid" "${20}" > /run/vmlet-test/libvirtd-started-by-tests.json
}

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
      mark_started_by_us
    fi
  fi
fi
for _ in $(seq 1 120); do
  answers && exit 0
  sleep 0.5
done
log "libvirtd did not answer within 60 s"
exit 1
