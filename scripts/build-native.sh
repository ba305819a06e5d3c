#!/usr/bin/env bash
# Builds vmlet's one native helper (native/netns.c, a Node-API addon) with the C compiler and
# the Node headers of the Node.js that runs vmlet. No node-gyp: the addon links against nothing but
# libc; Node resolves the napi_* symbols when it loads it. Rebuilds only when the source changed.
set -euo pipefail
cd "$(dirname "$0")/.."
src=native/netns.c
out=native/build/vmlet_netns.node
include=$(node -p 'require("node:path").join(process.execPath, "..", "..", "include", "node")')
[ -f "$include/node_api.h" ] || { echo "vmlet-build-native: no Node-API headers in $include (install the Node.js package with its headers)" >&2; exit 1; }
if [ -f "$out" ] && [ "$out" -nt "$src" ] && [ "$out" -nt "$0" ]; then exit 0; fi
mkdir -p native/build
tmp=$(mktemp native/build/.vmlet_netns.XXXXXX)
trap 'rm -f "$tmp"' EXIT
cc -std=c11 -O2 -Wall -Wextra -Werror -fPIC -shared -I"$include" -o "$tmp" "$src" -lpthread
mv "$tmp" "$out"
