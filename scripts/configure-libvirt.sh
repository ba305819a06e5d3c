#!/usr/bin/env bash
# Applies the libvirt QEMU-driver settings vmlet's VM pods need (see src/vmwrapper/README.md) as a
# managed block in qemu.conf, and restarts libvirtd only when its running instance has not loaded
# them yet. Idempotent: a second run changes nothing and restarts nothing.
#
# Why each setting (libvirt 9.0, QEMU 7.2):
#   user/group "+0"   libvirt starts the emulator (vmlet's vmwrapper) as root and leaves its
#                     capabilities alone only for root; the wrapper needs CAP_SYS_ADMIN to enter
#                     the pod's network namespace and then drops every capability itself.
#   cgroup_device_acl libvirt's default list plus /dev/net/tun: QEMU opens the pod's TAP through
#                     it. The list also populates the per-domain private /dev (namespaces), so the
#                     mount namespace can stay on.
#   capability_filters = [ "cpu-unavailable-features" ]
#                     After QEMU starts, libvirt checks the guest CPU. With this QEMU capability it
#                     does so with one QMP qom-get per CPU feature (~400 round trips, ~600 ms of a
#                     ~820 ms domain start on the project's machines); without it, libvirt uses its
#                     older check (the feature-words and filtered-features properties, 2 calls).
#                     qemu.conf marks capability_filters as a debugging knob and libvirt logs the
#                     domain as tainted (custom-hypervisor-feature). --keep-cpu-feature-probe
#                     leaves it out (and leaves any capability_filters of the file's own alone).
#
# Usage: configure-libvirt.sh [--qemu-conf PATH] [--no-restart] [--keep-cpu-feature-probe] [--remove]
#   --qemu-conf PATH          file to edit (default /etc/libvirt/qemu.conf)
#   --remove                  undo: drop the managed block, bring the disabled lines back, restart nothing
#   --no-restart              only edit the file
#   --keep-cpu-feature-probe  do not set capability_filters (slower domain starts)
set -euo pipefail

log() { printf 'vmlet-configure-libvirt: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

conf=/etc/libvirt/qemu.conf
restart=1
cpu_filter=1
remove=0
while [ $# -gt 0 ]; do
  case "$1" in
    --qemu-conf) [ $# -ge 2 ] || die "--qemu-conf needs a path"; conf=$2; shift 2 ;;
    --no-restart) restart=0; shift ;;
    --keep-cpu-feature-probe) cpu_filter=0; shift ;;
    --remove) remove=1; shift ;;
    *) die "unknown argument: $1" ;;
  esac
done
[ -f "$conf" ] || die "$conf does not exist (is libvirt-daemon-system installed?)"

begin='# BEGIN vmlet managed block: written by vmlet scripts/configure-libvirt.sh; edits here are overwritten'
end='# END vmlet managed block'
# Keys the block sets; an active setting of one of them elsewhere in the file is commented out so
# exactly one value is in force.
keys='user group cgroup_device_acl'
cpu_filter_line=
if [ "$cpu_filter" = 1 ]; then
  keys="$keys capability_filters"
  cpu_filter_line=$'capability_filters = [ "cpu-unavailable-features" ]\n'
fi
block=$(cat <<EOF
$begin
user = "+0"
group = "+0"
cgroup_device_acl = [
    "/dev/null", "/dev/full", "/dev/zero",
    "/dev/random", "/dev/urandom",
    "/dev/ptmx", "/dev/kvm",
    "/dev/net/tun"
]
${cpu_filter_line}$end
EOF
)

dir=$(dirname "$conf")
tmp=$(mktemp "$dir/.qemu.conf.vmlet.XXXXXX")
trap 'rm -f "$tmp"' EXIT

if [ "$remove" = 1 ]; then
  # The exact inverse of the rewrite below: the block goes (with the blank line an append put
  # before it), and every "#vmlet-disabled# " line gets its original text back.
  BEGIN_MARK='# BEGIN vmlet managed block' END_MARK=$end awk '
    { lines[NR] = $0 }
    END {
      b = 0; e = 0
      for (i = 1; i <= NR; i++) {
        if (!b && index(lines[i], ENVIRON["BEGIN_MARK"]) == 1) b = i
        else if (b && !e && index(lines[i], ENVIRON["END_MARK"]) == 1) e = i
      }
      if (b && !e) { print "vmlet-configure-libvirt: unterminated managed block" > "/dev/stderr"; exit 2 }
      for (i = 1; i <= NR; i++) {
        if (b && i >= b && i <= e) continue
        if (b && e == NR && i == b - 1 && lines[i] == "") continue
        line = lines[i]
        if (index(line, "#vmlet-disabled# ") == 1) line = substr(line, 18)
        print line
      }
    }
  ' "$conf" > "$tmp"
  if cmp -s "$conf" "$tmp"; then
    log "$conf: no vmlet settings to remove"
  else
    chown --reference="$conf" "$tmp"
    chmod --reference="$conf" "$tmp"
    mv -f "$tmp" "$conf"
    log "$conf: vmlet settings removed, earlier settings restored (libvirtd reads them when it next starts)"
  fi
  exit 0
fi

# Rewrites the file: the old managed block is replaced in place (or the new one appended), and
# every other active assignment of one of our keys is commented out with a "#vmlet-disabled# "
# prefix, including the continuation lines of a multi-line list value.
BLOCK=$block BEGIN_MARK='# BEGIN vmlet managed block' END_MARK=$end KEYS=$keys awk '
  BEGIN {
    n = split(ENVIRON["KEYS"], k, " "); for (i = 1; i <= n; i++) ours[k[i]] = 1
    inblock = 0; placed = 0; inlist = 0
  }
  # Markers match by prefix, so a block written by an older version of this script is found too.
  index($0, ENVIRON["BEGIN_MARK"]) == 1 { inblock = 1; if (!placed) { print ENVIRON["BLOCK"]; placed = 1 }; next }
  inblock { if (index($0, ENVIRON["END_MARK"]) == 1) inblock = 0; next }
  inlist { print "#vmlet-disabled# " $0; if (index($0, "]")) inlist = 0; next }
  {
    line = $0; sub(/^[ \t]+/, "", line)
    if (match(line, /^[A-Za-z_][A-Za-z0-9_]*[ \t]*=/)) {
      key = substr(line, 1, RLENGTH); sub(/[ \t]*=$/, "", key)
      if (key in ours) {
        print "#vmlet-disabled# " $0
        rest = substr(line, RLENGTH + 1)
        if (index(rest, "[") && !index(rest, "]")) inlist = 1
        next
      }
    }
    print
  }
  END {
    if (inblock) { print "vmlet-configure-libvirt: unterminated managed block" > "/dev/stderr"; exit 2 }
    if (!placed) { print ""; print ENVIRON["BLOCK"] }
  }
' "$conf" > "$tmp"

changed=0
if cmp -s "$conf" "$tmp"; then
  log "$conf: vmlet settings already in place"
else
  # Same owner and mode as the original (qemu.conf is root-only: 0600), then an atomic rename.
  chown --reference="$conf" "$tmp"
  chmod --reference="$conf" "$tmp"
  mv -f "$tmp" "$conf"
  changed=1
  log "$conf: vmlet settings written"
fi

[ "$restart" = 1 ] || exit 0

answers() { timeout 10 virsh -q -c qemu:///system version >/dev/null 2>&1; }

wait_answers() {
  # The first call after a start waits for libvirt's QEMU capability probe (seen up to 45 s).
  for _ in $(seq 1 360); do
    answers && return 0
    sleep 0.5
  done
  die "libvirtd did not answer within 180 s"
}

if [ "$(ps -o comm= -p 1)" = systemd ]; then
  if [ "$changed" = 1 ] && systemctl -q is-active libvirtd; then
    log "restarting libvirtd (systemd)"
    systemctl restart libvirtd
    wait_answers
    log "libvirtd restarted"
  fi
  exit 0
fi

# Without systemd: the running libvirtd (if any) is the one named in its pid file.
pid=
if [ -r /run/libvirtd.pid ]; then
  pid=$(tr -cd '0-9' < /run/libvirtd.pid)
  if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != libvirtd ]; then pid=; fi
fi
if [ -z "$pid" ]; then
  # Started some other way, without a pid file: accept exactly one libvirtd process.
  pids=$(pgrep -x libvirtd || true)
  [ "$(printf '%s\n' "$pids" | grep -c .)" -le 1 ] || die "several libvirtd processes: $(echo $pids)"
  pid=$pids
fi
if [ -z "$pid" ]; then
  log "libvirtd is not running; it reads the settings when it starts"
  exit 0
fi

# A daemon started before the file's last change has not read it, even if this run changed
# nothing (an earlier run may have stopped after writing the file).
started=$(( $(date +%s) - $(ps -o etimes= -p "$pid" | tr -d ' ') ))
modified=$(stat -c %Y "$conf")
if [ "$changed" = 0 ] && [ "$started" -gt "$modified" ]; then
  log "libvirtd (pid $pid) already runs with these settings"
  exit 0
fi

log "restarting libvirtd (pid $pid)"
kill -TERM "$pid"
# A second libvirtd started while the first is still exiting loses its socket to the first.
for _ in $(seq 1 300); do
  [ -d "/proc/$pid" ] || break
  sleep 0.1
done
if [ -d "/proc/$pid" ]; then
  log "libvirtd (pid $pid) did not exit within 30 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  [ ! -d "/proc/$pid" ] || die "libvirtd (pid $pid) does not exit"
fi
# start-libvirt.sh starts it the way vmlet's scripts always do (and records that they did).
"$(dirname "$0")/start-libvirt.sh"
wait_answers
log "libvirtd restarted (pid $(cat /run/libvirtd.pid 2>/dev/null || echo '?'))"
