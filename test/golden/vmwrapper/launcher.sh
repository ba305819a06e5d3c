#!/bin/sh
# vmlet vmwrapper launcher: written by vmlet (src/vmwrapper/launcher.ts); do not edit.
# libvirt runs this as a domain's <emulator>. With VMLET_NETNS=/run/netns/vmlet-… it enters that
# network namespace; in every case it drops all privileges and exec()s QEMU with the same
# arguments, so the process libvirt supervises is QEMU itself.
# qemu: /usr/bin/qemu-system-x86_64 size=19203456 mtime=1729500000000000000 ino=1234
fail() {
  printf 'vmlet-vmwrapper: %s\n' "$1" >&2
  exit 125
}
if [ -z "${VMLET_NETNS+set}" ]; then
  # libvirt's capability probe: no pod, no namespace to enter.
  exec /usr/bin/setpriv --no-new-privs --clear-groups --inh-caps=-all --ambient-caps=-all --bounding-set=-all --securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked,+keep_caps_locked -- /usr/bin/qemu-system-x86_64 "$@"
fi
ns=$VMLET_NETNS
name=${ns#/run/netns/}
# Only /run/netns/<vmlet netns name>: no other directory, no "..", no "/", nothing odd.
[ "/run/netns/$name" = "$ns" ] || fail "VMLET_NETNS must be /run/netns/<name>"
case $name in
  vmlet-[a-z0-9]*) ;;
  *) fail "VMLET_NETNS does not name a vmlet network namespace" ;;
esac
case $name in
  *[!a-z0-9-]* | *-) fail "VMLET_NETNS does not name a vmlet network namespace" ;;
esac
[ ${#name} -le 69 ] || fail "VMLET_NETNS names a netns longer than vmlet makes"
[ -f "$ns" ] && [ ! -L "$ns" ] || fail "network namespace $ns does not exist"
exec /usr/bin/nsenter --net="$ns" -- /usr/bin/setpriv --no-new-privs --clear-groups --inh-caps=-all --ambient-caps=-all --bounding-set=-all --securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked,+keep_caps_locked -- /usr/bin/qemu-system-x86_64 "$@"
