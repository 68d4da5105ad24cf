#!/usr/bin/env bash
# A script a user could have written: make a project, ship it, fan out a job, use the results.
# Needs: cycle on PATH, API (the server URL) and TOKEN_FILE (its token) in the environment.
set -euo pipefail

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

cycle auth login --api-url "$API" --with-token < "$TOKEN_FILE"
cycle project init squares --template shell --name "$PROJECT"
cd squares
cat > square.py <<'PY'
import json, os, pathlib
payload = json.loads(pathlib.Path(os.environ["COMPUTALOT_TASK_PAYLOAD"]).read_text())
items = payload["_batch"]["items"] if "_batch" in payload else [payload]
out = pathlib.Path(os.environ["CYCLE_ARTIFACTS_DIR"])
for item in items:
    (out / f"square-{item['n']}.txt").write_text(f"{item['n'] * item['n']}\n")
result = [{"n": i["n"], "square": i["n"] * i["n"]} for i in items]
pathlib.Path(os.environ["COMPUTALOT_TASK_RESULT"]).write_text(json.dumps(result if "_batch" in payload else result[0]))
PY
cycle project validate
cycle project upload

# Not a terminal: `job submit` prints only the id, so $(…) captures it.
id=$(cycle job submit --runner "python3 square.py" --payload '{"n": [1, 2, 3, 4, 5, 6]}' --fan-out-by n --batch-size 4 --tag scripted --wait)
echo "job: $id"

total=$(cycle job results "$id" --json | node -e '
  let text = ""; process.stdin.on("data", (c) => (text += c)).on("end", () => {
    const results = JSON.parse(text);
    if (!results.complete || results.items.length !== 6) { console.error("incomplete:", text); process.exit(1); }
    console.log(results.items.reduce((sum, item) => sum + item.result.square, 0));
  });')
[ "$total" = 91 ] || { echo "expected the squares of 1..6 to sum to 91, got $total" >&2; exit 1; }

cycle artifacts download --job "$id" --out "$work/artifacts"
for n in 1 2 3 4 5 6; do
  [ "$(cat "$work/artifacts/square-$n.txt")" = "$((n * n))" ] || { echo "square-$n.txt is wrong" >&2; exit 1; }
done

[ "$(cycle job list --tag scripted --json | node -e 'let t="";process.stdin.on("data",c=>t+=c).on("end",()=>console.log(JSON.parse(t)[0].id))')" = "$id" ]
echo "scripting OK"
