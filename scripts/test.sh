#!/usr/bin/env bash
# One command: install what is missing, then run the whole test suite (unit + real integration).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
./scripts/install-test-deps.sh
npm run --silent typecheck
exec npm test
