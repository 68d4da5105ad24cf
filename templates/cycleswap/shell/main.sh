#!/usr/bin/env bash
set -euo pipefail

echo "${GREETING:-hello} from $(hostname) (inside a container: ${INSIDE_CYCLESWAP_CONTAINER:-0})"
if [ -n "${COMPUTALOT_TASK_PAYLOAD:-}" ] && [ -f "$COMPUTALOT_TASK_PAYLOAD" ]; then
  echo "payload: $(cat "$COMPUTALOT_TASK_PAYLOAD")"
fi

mkdir -p "${CYCLE_OUTPUT_DIR:-outputs}"
date -u +%Y-%m-%dT%H:%M:%SZ > "${CYCLE_OUTPUT_DIR:-outputs}/finished-at.txt"
