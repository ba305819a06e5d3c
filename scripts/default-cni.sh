#!/usr/bin/env bash
# On a host whose CNI conf dir holds no network config, installs vmlet's default bridge network
# so that a first run works out of the box (as containerd's install does). `vmlet serve` itself
# never writes into the conf dir. Usage: default-cni.sh [conf-dir]
set -euo pipefail
dir=${1:-${VMLET_CNI_CONF_DIR:-/etc/cni/net.d}}
mkdir -p "$dir"
shopt -s nullglob
existing=("$dir"/*.conf "$dir"/*.conflist "$dir"/*.json)
if [ "${#existing[@]}" -gt 0 ]; then
  exit 0
fi
cat > "$dir/10-vmlet.conflist" <<'JSON'
{
  "cniVersion": "1.0.0",
  "name": "vmlet",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "vmlet0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "10.88.0.0/16" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
JSON
printf 'vmlet-cni: installed the default network %s/10-vmlet.conflist (bridge vmlet0, 10.88.0.0/16)\n' "$dir" >&2
