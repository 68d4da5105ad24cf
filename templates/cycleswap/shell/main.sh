#!/usr/bin/env bash
set -euo pipefail

echo "${GREETING:-hello} from $(hostname) (inside a container: ${INSIDE_CYCLESWAP_CONTAINER:-0})"
if [ -n "${COMPUTALOT_TASK_PAYLOAD:-}" ] && [ -f "$COMPUTALOT_TASK_PAYLOAD" ]; then
  echo "payload: $(cat "$COMPUTALOT_TASK_PAYLOAD")"
fi

# Files under /artifacts are the job's artifacts, captured while it runs.
mkdir -p "${CYCLE_ARTIFACTS_DIR:-artifacts}"
date -u +%Y-%m-%dT%H:%M:%SZ > "${CYCLE_ARTIFACTS_DIR:-artifacts}/finished-at.txt"
