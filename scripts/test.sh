#!/usr/bin/env bash
# One command: install what is missing, then run the whole test suite (unit + real integration),
# then the CRI conformance suite (critest, docs/conformance.md). When npm test fails the run stops
# there, so its own summary stays the last lines; otherwise the conformance run's closing line
# `N passed, M failed` is the last one. The exit code is non-zero when either fails.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
./scripts/install-test-deps.sh
npm run --silent typecheck
npm test
exec npm run --silent conformance
