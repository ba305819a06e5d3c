#!/usr/bin/env bash
# One command: install what is missing, then run the whole test suite (unit + real integration).
set -euo pipefail
cd "$(dirname "$0")/.."
VMLET_INSTALL_TEST_DEPS=1 ./scripts/install.sh
npm run --silent typecheck
exec npm test
