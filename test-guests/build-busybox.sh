#!/usr/bin/env bash
# Builds the vmlet end-to-end test guest (see test-guests/README.md) from Debian
# packages only: the newest Debian cloud kernel, a busybox initramfs and a FAT
# disk that syslinux boots, converted to qcow2. Prints the qcow2 path on stdout;
# everything else goes to stderr.
#
# The result is cached under a key made of this script, the files in
# test-guests/busybox/ and the versions of every package that goes into the image, so
# a second run with nothing changed only prints the path.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: test-guests/build-busybox.sh [--cache-dir DIR] [--kernel PACKAGE] [--nginx] [--rebuild]

  --cache-dir DIR   where downloads and images go
                    (default: $VMLET_IMAGES_CACHE, else /var/cache/vmlet/test-guests,
                    outside the clone so fresh clones reuse it)
  --kernel PACKAGE  kernel package to use, e.g. linux-image-6.12.117+deb12-cloud-amd64
                    (default: $VMLET_GUEST_KERNEL, else the newest *-cloud-amd64 apt knows)
  --nginx           the nginx variant: also Debian's nginx, serving Debian's default page on
                    port 80 (test-guest-nginx.qcow2, cached beside the plain guest)
  --rebuild         build even when a cached image with the same key exists

Needs root to install missing build tools with apt-get.
EOF
}

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
IMAGES_DIR=$(dirname "$SCRIPT_PATH")
REPO_DIR=$(dirname "$IMAGES_DIR")
GUEST_DIR=$IMAGES_DIR/busybox
readonly SCRIPT_PATH IMAGES_DIR REPO_DIR GUEST_DIR

readonly BUILD_TOOLS=(busybox-static cpio dosfstools kmod mtools qemu-utils syslinux syslinux-common xz-utils)
# The guest runs Debian's qemu-guest-agent (taken from its .deb, not installed on the build host);
# its binary needs these libraries, which are installed on the build host so that ldd finds them
# and their files are copied into the image.
readonly AGENT_PACKAGE=qemu-guest-agent
readonly AGENT_LIBRARIES=(libc6 libglib2.0-0 libnuma1 libudev1 liburing2)
# Versioned kernel packages only (not the linux-image-6.12-cloud-amd64 meta package).
readonly KERNEL_PACKAGE_RE='^linux-image-[0-9]+\.[0-9]+[.-][0-9][0-9A-Za-z.+~-]*-cloud-amd64$'
# The nginx variant (--nginx): Debian's nginx binary (package nginx; nginx-light only adds a
# module to it in Debian 12) with the libraries ldd finds, and nginx-common's default page.
readonly NGINX_PACKAGES=(nginx nginx-common)
readonly NGINX_LIBRARIES=(libcrypt1 libpcre2-8-0 libssl3 zlib1g)
# Every timestamp inside the image (cpio entries, FAT directory entries).
readonly FIXED_EPOCH=946684800 # 2000-01-01T00:00:00Z
readonly FAT_VOLUME_ID=564d4c54

export LC_ALL=C TZ=UTC SOURCE_DATE_EPOCH=$FIXED_EPOCH DEBIAN_FRONTEND=noninteractive
umask 022

log() { printf '[build-test-image] %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

cache_dir=${VMLET_IMAGES_CACHE:-/var/cache/vmlet/test-guests}
kernel_package=${VMLET_GUEST_KERNEL:-}
rebuild=false
variant=plain
while [[ $# -gt 0 ]]; do
	case "$1" in
	--cache-dir)
		[[ $# -ge 2 ]] || die "--cache-dir needs a value"
		cache_dir=$2
		shift 2
		;;
	--kernel)
		[[ $# -ge 2 ]] || die "--kernel needs a value"
		kernel_package=$2
		shift 2
		;;
	--rebuild)
		rebuild=true
		shift
		;;
	--nginx)
		variant=nginx
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
if [[ -n $kernel_package && ! $kernel_package =~ $KERNEL_PACKAGE_RE ]]; then
	die "not a versioned *-cloud-amd64 kernel package name: $kernel_package"
fi
mkdir -p "$cache_dir"
cache_dir=$(readlink -f "$cache_dir")
if [[ $variant == nginx ]]; then
	readonly NAME=test-guest-nginx
	readonly HOST_LIBRARIES=("${AGENT_LIBRARIES[@]}" "${NGINX_LIBRARIES[@]}")
else
	readonly NAME=test-guest
	readonly HOST_LIBRARIES=("${AGENT_LIBRARIES[@]}")
fi
readonly IMAGE_NAME=$NAME.qcow2

# --- build tools ------------------------------------------------------------

ensure_build_tools() {
	local -a missing=()
	local installed package
	installed=$(dpkg-query -W -f '${Package} ${db:Status-Abbrev}\n' "${BUILD_TOOLS[@]}" "${HOST_LIBRARIES[@]}" 2>/dev/null || true)
	for package in "${BUILD_TOOLS[@]}" "${HOST_LIBRARIES[@]}"; do
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

# --- package versions -------------------------------------------------------

# apt-cache takes about a second per call here (no pkgcache.bin), so the
# resolved versions are kept until apt's lists or dpkg's status change.
apt_state_fingerprint() {
	local -a files=()
	shopt -s nullglob
	files=(/var/lib/apt/lists/*_Packages* /var/lib/dpkg/status /etc/apt/sources.list
		/etc/apt/sources.list.d/* /etc/apt/preferences /etc/apt/preferences.d/*)
	shopt -u nullglob
	{
		printf 'kernel-override=%s variant=%s\n' "$kernel_package" "$variant"
		stat -c '%n %s %Y' -- "${files[@]}" 2>/dev/null || true
	} | sha256sum | cut -c1-32
}

newest_cloud_kernel() {
	apt-cache search --names-only 'cloud-amd64' | cut -d' ' -f1 |
		grep -E "$KERNEL_PACKAGE_RE" | sort -V | tail -n 1
}

candidate_version() {
	apt-cache policy "$1" | sed -n -E 's/^ *Candidate: *//p'
}

# Writes "kernel NAME VERSION", "agent NAME VERSION", "tool NAME VERSION" and "library NAME
# VERSION" lines, and "nginx NAME VERSION" lines for the nginx variant.
resolve_versions() {
	local kernel version agent_version package
	kernel=${kernel_package:-$(newest_cloud_kernel)}
	[[ -n $kernel ]] || die "apt knows no linux-image-*-cloud-amd64 package (apt-get update?)"
	version=$(candidate_version "$kernel")
	[[ -n $version && $version != "(none)" ]] || die "no installable version of $kernel"
	agent_version=$(candidate_version "$AGENT_PACKAGE")
	[[ -n $agent_version && $agent_version != "(none)" ]] || die "no installable version of $AGENT_PACKAGE"
	printf 'kernel %s %s\n' "$kernel" "$version"
	printf 'agent %s %s\n' "$AGENT_PACKAGE" "$agent_version"
	dpkg-query -W -f 'tool ${Package} ${Version}\n' "${BUILD_TOOLS[@]}"
	dpkg-query -W -f 'library ${Package} ${Version}\n' "${HOST_LIBRARIES[@]}"
	if [[ $variant == nginx ]]; then
		for package in "${NGINX_PACKAGES[@]}"; do
			version=$(candidate_version "$package")
			[[ -n $version && $version != "(none)" ]] || die "no installable version of $package"
			printf 'nginx %s %s\n' "$package" "$version"
		done
	fi
}

resolved_versions() {
	local file tmp
	file=$cache_dir/resolved-$variant-$(apt_state_fingerprint).txt
	if [[ ! -s $file ]]; then
		log "resolving package versions with apt-cache"
		tmp=$(mktemp "$cache_dir/.resolved.XXXXXX")
		# This runs in a command substitution's subshell: the trap is its own.
		# shellcheck disable=SC2064 # expand the path now
		trap "rm -f $(printf %q "$tmp")" EXIT
		resolve_versions >"$tmp"
		chmod 0644 "$tmp"
		find "$cache_dir" -maxdepth 1 -name "resolved-$variant-*.txt" -delete
		mv -f "$tmp" "$file"
		trap - EXIT
	fi
	cat "$file"
}

# --- cache key --------------------------------------------------------------

cache_key() {
	local versions=$1
	{
		printf 'variant %s\nversions\n%s\n' "$variant" "$versions"
		printf 'script %s\n' "$(sha256sum <"$SCRIPT_PATH" | cut -d' ' -f1)"
		(cd "$GUEST_DIR" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
	} | sha256sum | cut -c1-16
}

# --- build steps ------------------------------------------------------------

# Downloads (or reuses) a .deb; prints its path. $3: glob of the package's older .debs to delete.
fetch_deb() {
	local name=$1 version=$2 older=$3 debs=$cache_dir/debs file
	file=$debs/${name}_${version//:/%3a}_amd64.deb
	[[ -s $file ]] || file=$debs/${name}_${version//:/%3a}_all.deb
	mkdir -p "$debs"
	if [[ ! -s $file ]]; then
		log "downloading $name=$version"
		(cd "$debs" && apt-get download -o APT::Sandbox::User=root "$name=$version" >&2)
		[[ -s $file ]] || file=$debs/${name}_${version//:/%3a}_amd64.deb
	fi
	[[ $(dpkg-deb -f "$file" Package) == "$name" && $(dpkg-deb -f "$file" Version) == "$version" ]] ||
		die "$file is not $name $version"
	# Only the current version is kept.
	find "$debs" -maxdepth 1 -name "$older" ! -path "$file" -delete
	printf '%s\n' "$file"
}

# Program $2 (its path inside the unpacked .deb dir $1) into the image root $3, and every shared
# library ldd resolves for it (and the dynamic loader) from the build host, at the same paths.
install_program() {
	local unpacked=$1 program=$2 root=$3 lib
	install -D -m 0755 "$unpacked$program" "$root$program"
	if ldd "$root$program" | grep -q 'not found'; then
		die "$program needs libraries the build host lacks: $(ldd "$root$program" | grep 'not found' | tr -s ' \t\n' ' ')"
	fi
	# Lines: "libX.so.N => /path (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"; not the vDSO.
	ldd "$root$program" | sed -n -E -e 's/^.*=> (\/[^ ]+) .*$/\1/p' -e 's/^[[:space:]]*(\/[^ ]+) \(0x.*$/\1/p' |
		sort -u | while IFS= read -r lib; do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
		chmod 0755 "$root$lib"
	done
	log "${program##*/} and its $(ldd "$root$program" | grep -c '/') libraries"
}

# The nginx variant's files: the binary and its libraries, nginx-common's mime.types and default
# page, and test-guests/busybox/nginx/ (its configuration).
install_nginx() {
	local root=$1 work=$2 name version deb
	while read -r _ name version; do
		deb=$(fetch_deb "$name" "$version" "${name}_*.deb")
		dpkg-deb -x "$deb" "$work/nginx"
	done < <(grep '^nginx ' <<<"$versions")
	install_program "$work/nginx" /usr/sbin/nginx "$root"
	install -D -m 0644 "$work/nginx/etc/nginx/mime.types" "$root/etc/nginx/mime.types"
	install -D -m 0644 "$work/nginx/usr/share/nginx/html/index.html" "$root/usr/share/nginx/html/index.html"
	(cd "$GUEST_DIR/nginx" && find . -type f -printf '%P\n') | while IFS= read -r file; do
		install -D -m 0644 "$GUEST_DIR/nginx/$file" "$root/$file"
	done
}

# Copies the modules named in guest/modules.list plus their dependencies,
# decompressed, into $3/lib/modules and writes their load order to
# $3/etc/vmlet/modules (paths relative to /lib/modules).
install_modules() {
	local moddir=$1 list=$2 root=$3
	local -A module_path=() builtin=() state=()
	local -a order=()
	local file name rel

	while IFS= read -r -d '' file; do
		rel=${file#"$moddir"/}
		name=${file##*/}
		name=${name%%.ko*}
		module_path[${name//-/_}]=$rel
	done < <(find "$moddir/kernel" -name '*.ko*' -print0)
	while IFS= read -r rel; do
		name=${rel##*/}
		name=${name%.ko}
		builtin[${name//-/_}]=1
	done <"$moddir/modules.builtin"

	visit() {
		local mod=${1//-/_} dep deps
		[[ -n ${builtin[$mod]:-} ]] && return 0
		[[ ${state[$mod]:-} == "done" ]] && return 0
		[[ ${state[$mod]:-} == visiting ]] && die "module dependency cycle at $mod"
		[[ -n ${module_path[$mod]:-} ]] || die "kernel has no module or built-in named $mod"
		state[$mod]=visiting
		deps=$(modinfo -F depends "$moddir/${module_path[$mod]}")
		for dep in ${deps//,/ }; do visit "$dep"; done
		state[$mod]="done"
		order+=("$mod")
	}
	while read -r name _; do
		[[ -z $name || $name == \#* ]] && continue
		visit "$name"
	done <"$list"

	mkdir -p "$root/etc/vmlet" "$root/lib/modules"
	: >"$root/etc/vmlet/modules"
	for name in "${order[@]}"; do
		rel=${module_path[$name]}
		file=$root/lib/modules/${rel%.ko*}.ko
		mkdir -p "$(dirname "$file")"
		case "$rel" in
		*.ko.xz) xz -dc "$moddir/$rel" >"$file" ;;
		*.ko.gz) gzip -dc "$moddir/$rel" >"$file" ;;
		*.ko) cp "$moddir/$rel" "$file" ;;
		*) die "unsupported module compression: $rel" ;;
		esac
		printf '%s\n' "${rel%.ko*}.ko" >>"$root/etc/vmlet/modules"
	done
	log "modules: ${order[*]}"
}

build_initramfs() {
	local moddir=$1 out=$2 root=$3 agent_deb=$4 work=$5
	local applet file

	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,root,lib/modules}
	install -m 0755 /bin/busybox "$root/bin/busybox"
	while IFS= read -r applet; do
		[[ -e $root/$applet || -L $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
	done < <("$root/bin/busybox" --list-full | grep -v -x -E 'bin/busybox|linuxrc')

	# The guest's own files; executables are the ones starting with "#!".
	(cd "$GUEST_DIR/rootfs" && find . -type d -printf '%P\n') | while IFS= read -r file; do
		[[ -n $file ]] && mkdir -p "$root/$file"
	done
	(cd "$GUEST_DIR/rootfs" && find . -type f -printf '%P\n') | while IFS= read -r file; do
		if [[ $(head -c 2 "$GUEST_DIR/rootfs/$file") == '#!' ]]; then
			install -m 0755 "$GUEST_DIR/rootfs/$file" "$root/$file"
		else
			install -m 0644 "$GUEST_DIR/rootfs/$file" "$root/$file"
		fi
	done

	install_modules "$moddir" "$GUEST_DIR/modules.list" "$root"
	dpkg-deb -x "$agent_deb" "$work/agent"
	install_program "$work/agent" /usr/sbin/qemu-ga "$root"
	[[ $variant != nginx ]] || install_nginx "$root" "$work"

	find "$root" -exec touch -h -d "@$FIXED_EPOCH" {} +
	(cd "$root" && find . -mindepth 1 -printf '%P\n' | sort |
		cpio --create --format=newc --owner=0:0 --reproducible --quiet) | gzip -n -9 >"$out"
}

# A FAT filesystem as the whole disk (no partition table): SeaBIOS boots the
# syslinux boot sector in its first sector.
build_disk() {
	local vmlinuz=$1 initrd=$2 raw=$3 work=$4 # work: staging dir for the files
	local kib

	mkdir -p "$work"
	install -m 0644 "$vmlinuz" "$work/vmlinuz"
	install -m 0644 "$initrd" "$work/initrd.img"
	install -m 0644 "$GUEST_DIR/syslinux.cfg" "$work/syslinux.cfg"
	touch -d "@$FIXED_EPOCH" "$work/vmlinuz" "$work/initrd.img" "$work/syslinux.cfg"
	# Room for the files plus 2 MiB for FAT tables and ldlinux, in whole MiB.
	kib=$((($(stat -c %s "$vmlinuz") + $(stat -c %s "$initrd")) / 1024 + 2048))
	kib=$(((kib + 1023) / 1024 * 1024))
	mkfs.fat -C --invariant -i "$FAT_VOLUME_ID" -n VMLETGUEST "$raw" "$kib" >/dev/null
	mcopy -m -i "$raw" "$work/vmlinuz" "$work/initrd.img" "$work/syslinux.cfg" ::/
	syslinux --install "$raw"
}

build_image() {
	local key=$1 versions=$2 out_dir=$3
	local kernel_name kernel_version deb agent_name agent_version agent_deb work kver moddir

	read -r _ kernel_name kernel_version < <(grep '^kernel ' <<<"$versions")
	deb=$(fetch_deb "$kernel_name" "$kernel_version" 'linux-image-*.deb')
	read -r _ agent_name agent_version < <(grep '^agent ' <<<"$versions")
	agent_deb=$(fetch_deb "$agent_name" "$agent_version" "${agent_name}_*.deb")

	work=$(mktemp -d "$cache_dir/.work.XXXXXX")
	# shellcheck disable=SC2064 # expand the path now
	trap "rm -rf $(printf %q "$work")" EXIT

	log "unpacking $(basename "$deb")"
	dpkg-deb -x "$deb" "$work/kernel"
	kver=$(cd "$work/kernel/lib/modules" && ls)
	[[ $(wc -w <<<"$kver") -eq 1 ]] || die "expected one kernel in $deb, found: $kver"
	moddir=$work/kernel/lib/modules/$kver

	log "building initramfs"
	build_initramfs "$moddir" "$work/initramfs.cpio.gz" "$work/root" "$agent_deb" "$work"
	log "building disk"
	build_disk "$work/kernel/boot/vmlinuz-$kver" "$work/initramfs.cpio.gz" "$work/disk.raw" "$work/fat"

	mkdir -p "$work/out"
	qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$work/out/$IMAGE_NAME"
	{
		printf 'key %s\n' "$key"
		printf 'kernel-release %s\n' "$kver"
		printf '%s\n' "$versions"
		printf 'sha256 %s\n' "$(sha256sum <"$work/out/$IMAGE_NAME" | cut -d' ' -f1)"
	} >"$work/out/build-info.txt"

	rm -rf "$out_dir"
	mv -T "$work/out" "$out_dir"
	rm -rf "$work"
	trap - EXIT
}

# Points <cache>/test-guest.qcow2 at the newest build, for humans and tools
# that want a fixed path.
update_latest_link() {
	local target=$1 link=$cache_dir/$IMAGE_NAME
	[[ $(readlink "$link" 2>/dev/null) == "$target" ]] && return 0
	ln -sfn "$target" "$link.tmp.$$"
	mv -T "$link.tmp.$$" "$link"
}

main() {
	local versions key out_dir started

	ensure_build_tools
	versions=$(resolved_versions)
	key=$(cache_key "$versions")
	out_dir=$cache_dir/$NAME-$key

	if [[ $rebuild == false && -s $out_dir/$IMAGE_NAME && -s $out_dir/build-info.txt ]]; then
		update_latest_link "$NAME-$key/$IMAGE_NAME"
		printf '%s\n' "$out_dir/$IMAGE_NAME"
		return 0
	fi

	# One build at a time per cache dir; whoever waited may find it done.
	exec 9>"$cache_dir/.build.lock"
	flock 9
	if [[ $rebuild == true || ! -s $out_dir/build-info.txt ]]; then
		started=$SECONDS
		log "building $out_dir"
		build_image "$key" "$versions" "$out_dir"
		log "built in $((SECONDS - started)) s, $(stat -c %s "$out_dir/$IMAGE_NAME") bytes"
		# Older builds are unreachable by key now; the lock keeps builders out.
		find "$cache_dir" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended -regex ".*/$NAME-[0-9a-f]{16}" \
			! -path "$out_dir" -exec rm -rf {} +
	fi
	update_latest_link "$NAME-$key/$IMAGE_NAME"
	printf '%s\n' "$out_dir/$IMAGE_NAME"
}

main
