#!/usr/bin/env bash
# The curl examples of Computalot's docs (Projects, Project Setup, Jobs, Results & Artifacts,
# Billing, Recipes), run as written against `cycle server`: only the host ($BASE_URL) and $TOKEN
# differ. Needs: BASE_URL, TOKEN (a server started with --balance of at least $5 and
# --recipes test/fixtures/recipes), curl, jq.
set -euo pipefail

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

fail() { echo "docs-examples: $*" >&2; exit 1; }
# The status code of a request, its body in $work/body.json.
status() { curl -sS -o "$work/body.json" -w '%{http_code}' "$@"; }

# ---- health and index (no token) ----
[ "$(status "$BASE_URL/health")" = 200 ] || fail "GET /health: $(cat body.json)"
[ "$(status "$BASE_URL/api/v1/docs")" = 200 ] || fail "GET /api/v1/docs: $(cat body.json)"
jq -e '.name and .status and .version and .auth and .description and .docs.index' body.json > /dev/null || fail "the docs index lacks a documented field: $(cat body.json)"

# ---- Projects: create, then push to it ----
code=$(status "$BASE_URL/api/v1/projects" \
  -X POST -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -d '{"name": "my-project", "remote_dir": "/home/me/my-project"}')
[ "$code" = 201 ] || fail "POST /api/v1/projects: $code $(cat body.json)"

# ---- Project Setup: the minimal structure (python3 is a stand-in: the base image has none) ----
cat > Dockerfile <<'DOCKER'
FROM ubuntu:24.04
WORKDIR /workspace
COPY python3 /usr/local/bin/python3
COPY . .
DOCKER
cat > python3 <<'SH'
#!/bin/sh
# Stands in for python3 running evaluate.py or job.py: echoes the payload as the result.
echo "running $*"
printf '{"echo": %s}' "$(cat "$COMPUTALOT_TASK_PAYLOAD")" > "$COMPUTALOT_TASK_RESULT"
SH
chmod +x python3
cat > computalot.project.json <<'JSON'
{ "version": 1, "runtime": { "kind": "oci", "sandbox": "gvisor", "workdir": "/workspace" }, "entrypoint": { "command": ["python", "job.py"] } }
JSON
echo 'print("job")' > job.py
echo 'print("evaluate")' > evaluate.py

tar czf code.tar.gz Dockerfile computalot.project.json job.py evaluate.py python3
curl -sS "$BASE_URL/api/v1/projects/my-project/push" \
  -X POST -H "Authorization: Bearer $TOKEN" --data-binary @code.tar.gz | jq -e '.revision' > /dev/null || fail "push"
curl -sS "$BASE_URL/api/v1/projects/my-project/invalidate" \
  -X POST -H "Authorization: Bearer $TOKEN" | jq -e '.project == "my-project"' > /dev/null || fail "invalidate"
curl -sS "$BASE_URL/api/v1/projects/my-project/init" \
  -X POST -H "Authorization: Bearer $TOKEN" \
  -H "Content-Type: application/json" -d '{}' | jq -e '.project == "my-project"' > /dev/null || fail "init"
curl -sS "$BASE_URL/api/v1/projects/my-project/status" -H "Authorization: Bearer $TOKEN" | jq -e '.can_accept_new_jobs == true' > /dev/null || fail "status"

# ---- Jobs: submit as written, poll until a final status ----
job=$(curl -sS "$BASE_URL/api/v1/jobs" \
-X POST \
-H "Authorization: Bearer $TOKEN" \
-H "Content-Type: application/json" \
-d '{
"type": "structured_runner",
"runner_command": ["python3", "evaluate.py"],
"payload": {"model": "gpt-4", "dataset": "test_v3"},
"project": "my-project",
"timeout_s": 600
}')
id=$(jq -r '.id' <<< "$job")
[ "$(jq -r '.quote.outcome' <<< "$job")" = held ] || fail "the submit placed no hold: $job"
for _ in $(seq 1 120); do
  state=$(curl -sS "$BASE_URL/api/v1/jobs/$id" -H "Authorization: Bearer $TOKEN" | jq -r '.status')
  case "$state" in completed|partial|failed|cancelled) break ;; esac
  sleep 1 # the docs' poll loop (every 2-5 s there)
done
[ "$state" = completed ] || fail "job $id ended $state: $(curl -sS "$BASE_URL/api/v1/jobs/$id/output" -H "Authorization: Bearer $TOKEN")"
curl -sS "$BASE_URL/api/v1/jobs/$id/tasks" -H "Authorization: Bearer $TOKEN" | jq -e '.tasks[0] | .output and .live_feedback.output_tail' > /dev/null || fail "tasks"

# ---- Results & Artifacts ----
curl -sS "$BASE_URL/api/v1/results/$id" -H "Authorization: Bearer $TOKEN" > results.json
jq -e '.summary and .completeness.complete and .result_persisted and .output_persisted and (.aggregate_aliases | type == "object") and has("aggregate_result") and has("meta") and has("variant")' results.json > /dev/null || fail "results fields: $(cat results.json)"
jq -e '.tasks[0] | (.result_quality == 1) and (.result_warnings == [])' results.json > /dev/null || fail "per-task result fields: $(cat results.json)"
jq -e '.items[0].result.echo.dataset == "test_v3"' results.json > /dev/null || fail "the task's result: $(cat results.json)"

printf 'a,b\n1,2\n' > data.csv
first=$(curl -sS "$BASE_URL/api/v1/artifacts" -X POST -H "Authorization: Bearer $TOKEN" \
  -H "Content-Type: application/octet-stream" -H "X-Artifact-Filename: data.csv" --data-binary @data.csv | jq -r '.id')
second=$(curl -sS "$BASE_URL/api/v1/artifacts" -X POST -H "Authorization: Bearer $TOKEN" \
  -H "Content-Type: application/octet-stream" -H "X-Artifact-Filename: data.csv" --data-binary @data.csv | jq -r '.id')
[[ "$first" == art_* && "$first" == "$second" ]] || fail "the same bytes gave ids $first and $second"
sha=$(sha256sum data.csv | cut -d' ' -f1)
curl -sS "$BASE_URL/api/v1/artifacts/direct" -X POST -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -d "{\"sha256\": \"$sha\", \"size\": $(wc -c < data.csv), \"filename\": \"data.csv\"}" | jq -e --arg id "$first" '.exists and .artifact_id == $id' > /dev/null || fail "direct"
cmp <(curl -sS "$BASE_URL/api/v1/artifacts/$first" -H "Authorization: Bearer $TOKEN") data.csv || fail "the download differs"
curl -sS "$BASE_URL/api/v1/artifacts" -H "Authorization: Bearer $TOKEN" | jq -e '.artifacts | type == "array"' > /dev/null || fail "artifact list"

# ---- Billing ----
curl -sS "$BASE_URL/api/v1/account/balance" -H "Authorization: Bearer $TOKEN" > balance.json
jq -e '(.ledger_balance_usd | type == "number") and .held_usd == 0 and (.available_usd | type == "number")' balance.json > /dev/null || fail "balance: $(cat balance.json)"
curl -sS "$BASE_URL/api/v1/account/holds" -H "Authorization: Bearer $TOKEN" | jq -e --arg id "$id" '.holds[] | select(.job_id == $id) | .state == "settled"' > /dev/null || fail "holds"
curl -sS "$BASE_URL/api/v1/account/ledger" -H "Authorization: Bearer $TOKEN" | jq -e '.entries | type == "array"' > /dev/null || fail "ledger"
curl -sS "$BASE_URL/api/v1/account/quotes" -H "Authorization: Bearer $TOKEN" | jq -e --arg id "$id" '[.quotes[] | select(.job_id == $id)] | length == 1' > /dev/null || fail "quotes"
# More than the balance can hold: 402 with a shortfall quote.
code=$(status "$BASE_URL/api/v1/jobs" -X POST -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -d '{"project": "my-project", "fan_out": {"items": [{}, {}, {}, {}, {}, {}, {}, {}, {}, {}]}, "timeout_s": 86400}')
[ "$code" = 402 ] || fail "an unaffordable job got $code: $(cat body.json)"
jq -e '.quote.shortfall_usd > 0 and .quote.required_usd > .quote.available_usd' body.json > /dev/null || fail "402 without a shortfall quote: $(cat body.json)"

# ---- Feedback (no token) ----
[ "$(status "$BASE_URL/api/v1/feedback" -X POST -H "Content-Type: application/json" -d '{"type": "bug", "title": "t", "description": "d"}')" = 201 ] || fail "feedback: $(cat body.json)"

# ---- Recipes: discover, submit both ways (the docs' packing example), a payload off the schema ----
# The docs' examples print what they get; the checks read the same answers.
# List all recipes
curl -sS "$BASE_URL/api/v1/recipes" -H "Authorization: Bearer $TOKEN" > recipes.json
jq -e '.recipes[] | select(.name == "packing") | (.description | type == "string") and ([.operations[].name] | index("eval") != null)' recipes.json > /dev/null || fail "recipe list: $(cat recipes.json)"
# Inspect one recipe's schema and operations
curl -sS "$BASE_URL/api/v1/recipes/packing" -H "Authorization: Bearer $TOKEN" > packing.json
jq -e '.name == "packing" and (.payload_schema.properties.candidate | type == "object") and .schema == .payload_schema and (.operations | length > 0)' packing.json > /dev/null || fail "recipe detail: $(cat packing.json)"

routed=$(curl -sS "$BASE_URL/api/v1/recipes/packing/jobs" \
-X POST \
-H "Authorization: Bearer $TOKEN" \
-H "Content-Type: application/json" \
-d '{
"payload": {
"operation": "eval",
"candidate": [0.12, 0.31, 0.88, 0.45, 0.67, 0.23, 0.91, 0.14, 0.56, 0.78, 0.33, 0.62, 0.85, 0.19, 0.44, 0.71, 0.28, 0.93, 0.16, 0.59, 0.82, 0.37, 0.65, 0.11, 0.48, 0.74, 0.26, 0.89, 0.52, 0.18, 0.69, 0.41, 0.95, 0.32, 0.76, 0.22, 0.58, 0.84, 0.13, 0.47, 0.73, 0.39, 0.66, 0.21, 0.87]
},
"timeout_s": 300
}')
generic=$(curl -sS "$BASE_URL/api/v1/jobs" \
-X POST \
-H "Authorization: Bearer $TOKEN" \
-H "Content-Type: application/json" \
-d '{
"recipe": "packing",
"payload": {
"operation": "eval",
"candidate": [0.12, 0.31, 0.88, 0.45, 0.67, 0.23, 0.91, 0.14, 0.56, 0.78, 0.33, 0.62, 0.85, 0.19, 0.44, 0.71, 0.28, 0.93, 0.16, 0.59, 0.82, 0.37, 0.65, 0.11, 0.48, 0.74, 0.26, 0.89, 0.52, 0.18, 0.69, 0.41, 0.95, 0.32, 0.76, 0.22, 0.58, 0.84, 0.13, 0.47, 0.73, 0.39, 0.66, 0.21, 0.87]
},
"timeout_s": 300
}')
# The fixture scores a candidate as its mean (test/fixtures/recipes/packing/packing.py).
expected=$(jq '[.payload.candidate[]] | add / length' <<< "$routed")
for job in "$routed" "$generic"; do
  id=$(jq -r '.id' <<< "$job")
  [[ "$id" == job_* && "$(jq -r '.recipe' <<< "$job")" == packing ]] || fail "recipe submit: $job"
  for _ in $(seq 1 120); do
    state=$(curl -sS "$BASE_URL/api/v1/jobs/$id" -H "Authorization: Bearer $TOKEN" | jq -r '.status')
    case "$state" in completed|partial|failed|cancelled) break ;; esac
    sleep 1 # the docs' poll loop
  done
  [ "$state" = completed ] || fail "recipe job $id ended $state: $(curl -sS "$BASE_URL/api/v1/jobs/$id/output" -H "Authorization: Bearer $TOKEN")"
  curl -sS "$BASE_URL/api/v1/results/$id" -H "Authorization: Bearer $TOKEN" > results.json
  jq -e --argjson expected "$expected" '.items[0].result | .operation == "eval" and .feasible and ((.score - $expected) | fabs < 0.000001)' results.json > /dev/null || fail "recipe result: $(cat results.json)"
  curl -sS "$BASE_URL/api/v1/artifacts?job=$id" -H "Authorization: Bearer $TOKEN" | jq -e '[.artifacts[].name] == ["score.json"]' > /dev/null || fail "recipe artifacts of $id"
done

# "If a submit fails with 422, inspect GET /api/v1/recipes/:name": a candidate of the wrong length.
code=$(status "$BASE_URL/api/v1/recipes/packing/jobs" -X POST -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -d '{"payload": {"operation": "eval", "candidate": [0.12, 0.31]}, "timeout_s": 300}')
[ "$code" = 422 ] || fail "a payload off the schema got $code: $(cat body.json)"
jq -e '.error.field == "payload.candidate" and (.error.message | contains("GET /api/v1/recipes/packing"))' body.json > /dev/null || fail "the 422 does not name the field: $(cat body.json)"

echo "docs examples OK"
