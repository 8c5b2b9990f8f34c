#!/usr/bin/env bash
# Build the example web app as a static Linux binary at example/app/webapp.
# Standard library only, so this works without network access.
set -euo pipefail

cd "$(dirname "$0")/app"
export CGO_ENABLED=0
export GOFLAGS=-mod=mod
export GOPROXY=off
export GOTOOLCHAIN=local
export GOOS="${GOOS:-linux}"
go build -trimpath -ldflags "-s -w" -o webapp .
echo "built $(pwd)/webapp"
