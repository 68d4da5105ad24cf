#!/usr/bin/env bash
# A task: reads its payload, reports progress, writes its result (the runner protocol).
set -euo pipefail

payload=$(cat "$COMPUTALOT_TASK_PAYLOAD")
echo "COMPUTALOT_PROGRESS:{\"stage\":\"started\"}"
mkdir -p "${CYCLE_ARTIFACTS_DIR:-/artifacts}"
echo "$payload" > "${CYCLE_ARTIFACTS_DIR:-/artifacts}/payload.json"
echo "COMPUTALOT_PROGRESS:{\"stage\":\"done\"}"
printf '{"ok":true,"payload":%s}\n' "$payload" > "$COMPUTALOT_TASK_RESULT"
