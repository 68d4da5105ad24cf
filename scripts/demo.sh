#!/usr/bin/env bash
# The main job, end to end on this machine: the example project through `cycle project test`.
# (Run scripts/setup.sh first: it installs Docker and builds the local base image.)
set -euo pipefail
cd "$(dirname "$0")/.."
CYCLE_BIN="$PWD/bin/cycle.js"
cycle() { node "$CYCLE_BIN" "$@"; }

work=$(mktemp -d /tmp/cycle-demo.XXXXXX)
cp -r examples/squares "$work/squares"
cd "$work/squares"
echo "== cycle project validate"
cycle project validate
echo "== cycle project hash"
cycle project hash
echo "== cycle project test --payload '{\"n\": 7}'"
cycle project test --payload '{"n": 7}'
echo "== demo done (project copy in $work/squares)"
