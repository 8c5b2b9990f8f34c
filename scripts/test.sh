#!/usr/bin/env bash
# The whole test suite: lint, the example app's Go tests, unit tests, and the integration
# tests on a fresh sandbox of 3 local servers (created and removed by the tests). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
# The example app's own tests (its worker): standard library only, no network.
(cd example/app && GOPROXY=off GOTOOLCHAIN=local go test ./...)
# Integration tests must run here, not be skipped for want of root or tools.
export SLOTSWAP_REQUIRE_SANDBOX=1
# The slowest tests are listed at the end: where the suite's time goes.
exec .venv/bin/pytest -ra --durations=30 "$@"
