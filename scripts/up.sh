#!/usr/bin/env bash
# One command: install what is missing, then run vmlet in the foreground with default settings.
# Extra arguments go to `vmlet serve` (see `bin/vmlet serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
./scripts/default-cni.sh
exec ./bin/vmlet serve "$@"
