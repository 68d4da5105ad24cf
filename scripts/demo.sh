#!/usr/bin/env bash
# The main job, end to end on this machine (run scripts/setup.sh first):
#   1. the example project through `cycle project test` (a local Docker run, as a worker would);
#   2. a local `cycle server`: upload, a fan-out job of 10 items in batches of 3, its results
#      and artifacts.
set -euo pipefail
cd "$(dirname "$0")/.."
CYCLE_BIN="$PWD/bin/cycle.js"
cycle() { node "$CYCLE_BIN" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

work=$(mktemp -d /tmp/cycle-demo.XXXXXX)
export XDG_CONFIG_HOME="$work/config"
cp -r examples/squares "$work/squares"
cd "$work/squares"

step "cycle project validate"
cycle project validate
step "cycle project test --payload '{\"n\": 7}'"
cycle project test --payload '{"n": 7}'

step "cycle server (in the background; log in $work/server.log)"
# node itself in the background (not the `cycle` function, whose subshell would hide its pid)
node "$CYCLE_BIN" server --port 0 --data-dir "$work/server" --workers 3 >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q 'listening on' "$work/server.log" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/server.log" | head -1)
[ -n "$url" ] || { cat "$work/server.log" >&2; exit 1; }
echo "server: $url"

step "cycle auth login --api-url $url --with-token < $work/server/token"
cycle auth login --api-url "$url" --with-token <"$work/server/token"
step "cycle project upload"
cycle project upload
step "cycle job submit --payload '{\"n\": [1..10]}' --fan-out-by n --batch-size 3 --wait"
id=$(cycle job submit --payload '{"n": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}' --fan-out-by n --batch-size 3 --tag demo --wait)
step "cycle job results $id"
cycle job results "$id"
step "cycle artifacts download --job $id --out $work/artifacts"
cycle artifacts download --job "$id" --out "$work/artifacts"

step "demo done: 1 local run, 1 job of $(cycle job get "$id" --json | node -e 'let t="";process.stdin.on("data",c=>t+=c).on("end",()=>{const j=JSON.parse(t);console.log(`${j.counts.total} tasks, ${j.status}`)})') (files in $work)"
