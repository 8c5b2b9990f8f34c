#!/usr/bin/env bash
# The demo: install what is needed, create a sandbox of 3 local servers, build and deploy v1,
# then deploy v2 while a load generator runs, and print requests sent, failed and versions seen.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m testbed.demo "$@"
