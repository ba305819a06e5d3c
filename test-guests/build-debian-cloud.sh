#!/usr/bin/env bash
# Builds the vmlet cloud-init test guest (see test-guests/README.md): a Debian 12
# system with real cloud-init, openssh-server and qemu-guest-agent on Debian's
# 6.1 cloud kernel, from Debian packages only (mmdebstrap), assembled into a
# partitioned disk without loop devices and converted to qcow2. Prints the
# qcow2 path on stdout; everything else goes to stderr.
#
# The result is cached under a key made of this script and the files in
# test-guests/debian-cloud/, so a second run with nothing changed only prints
# the path.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: test-guests/build-debian-cloud.sh [--cache-dir DIR] [--rebuild]

  --cache-dir DIR   where images go
                    (default: $VMLET_IMAGES_CACHE, else /var/cache/vmlet/test-guests,
                    outside the clone so fresh clones reuse it)
  --rebuild         build even when a cached image with the same key exists

Runs as root (mmdebstrap in root mode, apt-get for missing build tools).
EOF
}

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
IMAGES_DIR=$(dirname "$SCRIPT_PATH")
GUEST_DIR=$IMAGES_DIR/debian-cloud
readonly SCRIPT_PATH IMAGES_DIR GUEST_DIR

# openssh-client is not for the build: the e2e test that runs this script logs in with it.
readonly BUILD_TOOLS=(mmdebstrap dosfstools e2fsprogs fdisk mtools qemu-utils syslinux syslinux-common openssh-client)
readonly SUITE=bookworm
readonly MIRRORS=(
	"deb http://deb.debian.org/debian $SUITE main"
	"deb http://deb.debian.org/debian $SUITE-updates main"
	"deb http://deb.debian.org/debian-security $SUITE-security main"
)
# What the guest runs: init and udev, cloud-init and what its Debian renderer
# (ENI) needs to bring NICs up (ifupdown, a DHCP client), sshd, the guest agent,
# logind (+ dbus) for the ACPI power button, the locale cloud-init sets, and
# Debian's default cloud kernel (6.1 in bookworm) with an initramfs.
readonly PACKAGES=(
	systemd-sysv udev dbus libpam-systemd kmod e2fsprogs
	cloud-init openssh-server qemu-guest-agent sudo locales
	ifupdown isc-dhcp-client iproute2 netbase
	linux-image-cloud-amd64 initramfs-tools zstd
)
# The locale cloud-init's Debian distro applies when the seed names none.
readonly GUEST_LOCALE=en_US.UTF-8
readonly IMAGE_NAME=debian-cloud.qcow2
readonly ROOT_UUID=5f6d6c74-7465-7374-2d72-6f6f74667331
readonly FAT_VOLUME_ID=564d4c43
# Disk layout (512-byte sectors): MBR, FAT boot partition from 1 MiB, ext4 root after it.
readonly BOOT_START=2048 BOOT_MIB=64 DISK_GIB=2

export LC_ALL=C TZ=UTC DEBIAN_FRONTEND=noninteractive
umask 022

log() { printf '[build-debian-cloud] %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

cache_dir=${VMLET_IMAGES_CACHE:-/var/cache/vmlet/test-guests}
rebuild=false
customize_root=
while [[ $# -gt 0 ]]; do
	case "$1" in
	--customize) # internal: mmdebstrap's customize hook
		[[ $# -eq 2 ]] || die "--customize needs the root directory"
		customize_root=$2
		shift 2
		;;
	--cache-dir)
		[[ $# -ge 2 ]] || die "--cache-dir needs a value"
		cache_dir=$2
		shift 2
		;;
	--rebuild)
		rebuild=true
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		die "unknown argument: $1"
		;;
	esac
done
if [[ -z $customize_root ]]; then
	mkdir -p "$cache_dir"
	cache_dir=$(readlink -f "$cache_dir")
fi

ensure_build_tools() {
	local -a missing=()
	local installed package
	installed=$(dpkg-query -W -f '${Package} ${db:Status-Abbrev}\n' "${BUILD_TOOLS[@]}" 2>/dev/null || true)
	for package in "${BUILD_TOOLS[@]}"; do
		grep -q -x -F "$package ii " <<<"$installed" || missing+=("$package")
	done
	[[ ${#missing[@]} -eq 0 ]] && return 0
	[[ $(id -u) -eq 0 ]] || die "missing build tools (${missing[*]}); run as root or install them"
	log "installing ${missing[*]}"
	if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
		apt-get update >&2
		apt-get install -y --no-install-recommends "${missing[@]}" >&2
	fi
}

cache_key() {
	{
		printf 'script %s\n' "$(sha256sum <"$SCRIPT_PATH" | cut -d' ' -f1)"
		(cd "$GUEST_DIR" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
	} | sha256sum | cut -c1-16
}

# The root filesystem, in directory $1.
build_rootfs() {
	local root=$1
	local include
	include=$(
		IFS=,
		printf '%s' "${PACKAGES[*]}"
	)
	log "mmdebstrap $SUITE (${#PACKAGES[@]} packages and their dependencies)"
	# Hooks run on the host with the root directory as $1. The essential hook
	# puts the initramfs configuration in place before the kernel package builds
	# the initramfs; the customize hook finishes the system.
	mmdebstrap --variant=apt --mode=root --format=directory \
		--include="$include" \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--essential-hook="mkdir -p \"\$1/etc/initramfs-tools/conf.d\" && cp $(printf %q "$GUEST_DIR/initramfs.conf") \"\$1/etc/initramfs-tools/conf.d/vmlet.conf\" && cp $(printf %q "$GUEST_DIR/initramfs.modules") \"\$1/etc/initramfs-tools/modules\"" \
		--customize-hook="$(printf %q "$SCRIPT_PATH") --customize \"\$1\"" \
		"$SUITE" "$root" "${MIRRORS[@]}" >&2
}

# Runs as mmdebstrap's customize hook, with the finished root directory.
customize_rootfs() {
	local root=$1
	[[ -d $root/etc ]] || die "customize: $root is not a root directory"
	# Locale: generated, and the system default, so cloud-init's locale module
	# finds it set and does not run locale-gen itself.
	printf '%s UTF-8\n' "$GUEST_LOCALE" >"$root/etc/locale.gen"
	chroot "$root" locale-gen >&2
	printf 'LANG=%s\n' "$GUEST_LOCALE" >"$root/etc/default/locale"

	install -m 0644 "$GUEST_DIR/cloud.cfg" "$root/etc/cloud/cloud.cfg.d/90-vmlet-test-guest.cfg"
	printf 'UUID=%s / ext4 errors=remount-ro 0 1\n' "$ROOT_UUID" >"$root/etc/fstab"

	# First boot is the point: no host identity baked into the image.
	rm -f "$root"/etc/ssh/ssh_host_*
	: >"$root/etc/machine-id"
	rm -f "$root/var/lib/dbus/machine-id" "$root/etc/hostname"
	# Nothing periodic or unneeded competes with cloud-init for the TCG CPU.
	local unit
	for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
		fstrim.timer man-db.timer logrotate.timer dpkg-db-backup.timer getty@tty1.service \
		systemd-timesyncd.service; do
		ln -sf /dev/null "$root/etc/systemd/system/$unit"
	done
	rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/*
}

# Assembles boot files and the root directory $1 into the raw disk $2.
assemble_disk() {
	local root=$1 disk=$2 work
	work=$(dirname "$disk")
	local kernel initrd
	kernel=$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
	initrd=$(find "$root/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n 1)
	[[ -n $kernel && -n $initrd ]] || die "no kernel or initrd in $root/boot"
	log "kernel $(basename "$kernel") ($(du -h "$kernel" | cut -f1)), initrd $(du -h "$initrd" | cut -f1)"

	local disk_sectors=$((DISK_GIB * 1024 * 1024 * 2))
	local boot_sectors=$((BOOT_MIB * 1024 * 2))
	local root_start=$((BOOT_START + boot_sectors))
	local root_sectors=$((disk_sectors - root_start))

	# FAT boot partition; -h tells its boot sector where it starts on the disk.
	local boot=$work/boot.fat
	rm -f "$boot"
	mkfs.fat -C -F 32 -n VMLETBOOT -i "$FAT_VOLUME_ID" -h "$BOOT_START" "$boot" $((BOOT_MIB * 1024)) >&2
	sed "s/@ROOT_UUID@/$ROOT_UUID/" "$GUEST_DIR/syslinux.cfg" >"$work/syslinux.cfg"
	mcopy -i "$boot" "$kernel" ::vmlinuz
	mcopy -i "$boot" "$initrd" ::initrd.img
	mcopy -i "$boot" "$work/syslinux.cfg" ::syslinux.cfg
	syslinux --install "$boot"

	# ext4 root filled from the directory (no mount).
	local rootfs=$work/root.ext4
	rm -f "$rootfs"
	mkfs.ext4 -q -F -L vmletroot -U "$ROOT_UUID" -d "$root" "$rootfs" $((root_sectors / 2))k >&2

	rm -f "$disk"
	truncate -s $((disk_sectors * 512)) "$disk"
	sfdisk -q --no-reread --no-tell-kernel "$disk" >&2 <<EOF
label: dos
label-id: 0x564d4c54
start=$BOOT_START, size=$boot_sectors, type=c, bootable
start=$root_start, size=$root_sectors, type=83
EOF
	dd if="$boot" of="$disk" bs=512 seek="$BOOT_START" conv=notrunc,sparse status=none
	dd if="$rootfs" of="$disk" bs=1M seek=$((root_start * 512)) oflag=seek_bytes conv=notrunc,sparse status=none
	# syslinux's MBR code (boots the active partition) in the first 440 bytes.
	dd if=/usr/lib/syslinux/mbr/mbr.bin of="$disk" bs=440 count=1 conv=notrunc status=none
	rm -f "$boot" "$rootfs"
}

main() {
	ensure_build_tools
	local key out image
	key=$(cache_key)
	out=$cache_dir/debian-cloud-$key
	image=$out/$IMAGE_NAME
	if [[ $rebuild == false && -s $image ]]; then
		printf '%s\n' "$image"
		return 0
	fi

	exec 9>"$cache_dir/.build-debian-cloud.lock"
	flock 9
	if [[ $rebuild == false && -s $image ]]; then
		printf '%s\n' "$image"
		return 0
	fi

	local work started=$SECONDS
	work=$(mktemp -d "$cache_dir/.debian-cloud-build.XXXXXX")
	# shellcheck disable=SC2064 # expand the path now
	trap "rm -rf $(printf %q "$work")" EXIT
	build_rootfs "$work/root"
	assemble_disk "$work/root" "$work/disk.raw"
	log "converting to qcow2"
	qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$work/$IMAGE_NAME"
	{
		printf 'key %s\n' "$key"
		printf 'kernel %s\n' "$(ls "$work/root/lib/modules")"
		chroot "$work/root" dpkg-query -W -f '${Package} ${Version}\n' "${PACKAGES[@]}"
		printf 'sha256 %s\n' "$(sha256sum <"$work/$IMAGE_NAME" | cut -d' ' -f1)"
	} >"$work/build-info.txt"
	rm -rf "$work/root" "$work/disk.raw"
	rm -rf "$out"
	mv "$work" "$out"
	trap - EXIT
	chmod 0755 "$out"
	ln -sfn "debian-cloud-$key/$IMAGE_NAME" "$cache_dir/$IMAGE_NAME"
	# Older builds of this image go; the busybox guest's files are left alone.
	find "$cache_dir" -maxdepth 1 -name 'debian-cloud-*' -type d ! -path "$out" -exec rm -rf {} +
	log "built $image ($(du -h "$image" | cut -f1)) in $((SECONDS - started)) s"
	printf '%s\n' "$image"
}

if [[ -n $customize_root ]]; then
	customize_rootfs "$customize_root"
else
	main
fi
