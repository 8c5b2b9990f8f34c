#!/bin/sh
# post_success / post_failure hook: tell people what happened (here: one line on stdout,
# which `fab` sends to its stderr). SLOTSWAP_RESULT_JSON holds the same document as --json.
set -eu
echo "$SLOTSWAP_HOOK: $SLOTSWAP_TASK of $SLOTSWAP_TAG: $SLOTSWAP_OUTCOME (exit $SLOTSWAP_EXIT_CODE)"
