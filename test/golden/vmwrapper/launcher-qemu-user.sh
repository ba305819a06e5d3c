#!/bin/sh
# vmlet vmwrapper launcher: written by vmlet (src/vmwrapper/launcher.ts); do not edit.
# libvirt runs this as a domain's <emulator>. With VMLET_NETNS=/run/netns/vmlet-… it enters that
# network namespace; in every case it drops all privileges and exec()s QEMU with the same
# arguments, so the process libvirt supervises is QEMU itself.
# qemu: /usr/bin/qemu-system-x86_64 size=19203456 mtime=1729500000000000000 ino=1234
# qemu user: uid 64100 gid 64101
fail() {
  printf 'vmlet-vmwrapper: %s\n' "$1" >&2
  exit 125
}
grant() {
  for arg in "$@"; do
    case $arg in
      *'"id":"masterKey0"'*) ;;
      *) continue ;;
    esac
    key=${arg#*'"file":"'}
    key=${key%%'"'*}
    kdir=${key%/master-key.aes}
    kname=${kdir#/var/lib/libvirt/qemu/}
    [ "/var/lib/libvirt/qemu/$kname/master-key.aes" = "$key" ] || fail "unexpected master key path $key"
    case $kname in
      domain-[0-9]*) ;;
      *) fail "unexpected master key path $key" ;;
    esac
    case $kname in
      *[!A-Za-z0-9_.-]*) fail "unexpected master key path $key" ;;
    esac
    [ -d "$kdir" ] && [ ! -L "$kdir" ] && [ -f "$key" ] && [ ! -L "$key" ] || fail "master key $key is missing"
    /bin/chmod o+x /var/lib/libvirt/qemu && /bin/chgrp 64101 "$kdir" "$key" && /bin/chmod 0750 "$kdir" && /bin/chmod 0640 "$key" ||
      fail "cannot give the QEMU group the master key $key"
    # virtiofsd's vhost-user sockets (volumes), made by libvirt before QEMU starts: QEMU connects to them.
    for sock in "$kdir"/fs*-fs.sock; do
      [ -S "$sock" ] && [ ! -L "$sock" ] || continue
      /bin/chgrp 64101 "$sock" && /bin/chmod 0660 "$sock" || fail "cannot give the QEMU group $sock"
    done
  done
  [ /proc/self/ns/mnt -ef /proc/1/ns/mnt ] && return 0
  for dev in /dev/net/tun /dev/kvm; do
    [ -c "$dev" ] || continue
    /bin/chgrp 64101 "$dev" && /bin/chmod 0660 "$dev" || fail "cannot give the QEMU group $dev"
  done
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
grant "$@"
exec /usr/bin/nsenter --net="$ns" -- /usr/bin/setpriv --reuid=64100 --regid=64101 --no-new-privs --clear-groups --inh-caps=-all --ambient-caps=-all --bounding-set=-all --securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked,+keep_caps_locked -- /usr/bin/qemu-system-x86_64 "$@"
