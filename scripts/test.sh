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
# Two processes (SLOTSWAP_TEST_PROCESSES), each a module at a time and, once it reaches a
# sandbox test, with a sandbox of its own (tests/conftest.py): the sandbox tests wait on
# servers far more than they use a CPU. The slowest tests are listed at the end.
# Process K (from 0) uses sandbox ID SLOTSWAP_SANDBOX_ID + K: a run takes IDs base to
# base + N - 1, and another run beside it must start past them.
processes="${SLOTSWAP_TEST_PROCESSES:-2}"
base="${SLOTSWAP_SANDBOX_ID:-0}"
if ! [[ "$processes" =~ ^[1-9]$ && "$base" =~ ^[0-9]$ ]] || (( base + processes - 1 > 9 )); then
    echo "error: SLOTSWAP_TEST_PROCESSES ($processes, 1 to 9) test processes take sandbox IDs" \
         "from SLOTSWAP_SANDBOX_ID ($base) on, and the last must be at most 9" >&2
    exit 2
fi
exec .venv/bin/pytest -ra --durations=30 -n "$processes" --dist loadfile "$@"
