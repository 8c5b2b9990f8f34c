#!/bin/sh
# pre_deploy hook: refuse a deploy that would go wrong before any server is touched.
# A non-zero exit stops `fab deploy` / `fab rollback` with exit code 5, nothing changed.
set -eu
echo "pre_deploy: $SLOTSWAP_TASK of $SLOTSWAP_TAG to $SLOTSWAP_SERVERS"
case "$SLOTSWAP_TAG" in
  *dirty*) echo "refusing to deploy a dirty build: $SLOTSWAP_TAG" >&2; exit 1 ;;
esac
