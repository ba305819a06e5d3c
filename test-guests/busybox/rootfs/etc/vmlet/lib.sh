# Shared helpers for the guest's shell scripts (sourced, not run).

# One protocol line on the serial console: "VMLET-GUEST <words...>".
say() {
	printf 'VMLET-GUEST %s\n' "$*" >/dev/console
}

# Value of a top-level key in a NoCloud meta-data document read from stdin:
# the YAML form "key: value" (value optionally quoted), or a JSON object with
# "key": "value". Prints nothing when the key is absent.
meta_value() {
	_doc=$(cat)
	_val=$(printf '%s\n' "$_doc" | sed -n -E "s/^[\"']?$1[\"']?[[:space:]]*:[[:space:]]*//p" | head -n 1)
	if [ -z "$_val" ]; then
		_val=$(printf '%s\n' "$_doc" | grep -o -E "\"$1\"[[:space:]]*:[[:space:]]*\"[^\"]*\"" | head -n 1 |
			sed -E 's/^[^:]*:[[:space:]]*//')
	fi
	printf '%s\n' "$_val" | sed -E -e 's/[[:space:]]+$//' -e 's/^"(.*)"[,]?$/\1/' -e "s/^'(.*)'\$/\\1/"
}

# Values from the seed and from DHCP end up on the console and in commands:
# accept only plain tokens (shell patterns, no forks: forks are slow under TCG).
valid_instance_id() {
	case "$1" in '' | *[!A-Za-z0-9._:@+=/-]*) return 1 ;; esac
	[ "${#1}" -le 128 ]
}

valid_hostname() {
	case "$1" in '' | [!A-Za-z0-9]* | *[!A-Za-z0-9.-]*) return 1 ;; esac
	[ "${#1}" -le 63 ]
}

valid_ipv4() {
	case "$1" in *[!0-9.]* | *..* | .* | *.) return 1 ;; [0-9]*.[0-9]*.[0-9]*.[0-9]*) ;; *) return 1 ;; esac
	case "$1" in *.*.*.*.*) return 1 ;; esac
	[ "${#1}" -le 15 ]
}

valid_ipv4_prefix() {
	valid_ipv4 "${1%/*}" || return 1
	case "${1#*/}" in '' | *[!0-9]*) return 1 ;; esac
	[ "${1#*/}" -le 32 ]
}

# Whole seconds since boot.
uptime_seconds() {
	read -r _up _ </proc/uptime
	echo "${_up%%.*}"
}

# True when something listens on TCP port $1 (IPv4 or IPv6); state 0A = LISTEN.
tcp_listening() {
	_hex=$(printf '%04X' "$1")
	grep -q -E "^ *[0-9]+: [0-9A-F]+:$_hex [0-9A-F]+:0000 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
