"""Squares the numbers in its payload (the runner protocol) and writes one artifact per number."""

import json
import os
import pathlib

payload_file = os.environ.get("COMPUTALOT_TASK_PAYLOAD")
payload = json.loads(pathlib.Path(payload_file).read_text()) if payload_file else {}
# A fan-out task gets one item (payload["n"]), a batched task a list (payload["_batch"]).
numbers = [item["n"] for item in payload["_batch"]["items"]] if "_batch" in payload else [payload.get("n", 3)]

print(os.environ.get("GREETING", "hello"), flush=True)
outputs = pathlib.Path(os.environ.get("CYCLE_ARTIFACTS_DIR", "artifacts"))
outputs.mkdir(parents=True, exist_ok=True)
for index, n in enumerate(numbers):
    print("COMPUTALOT_PROGRESS:" + json.dumps({"done": index + 1, "of": len(numbers)}), flush=True)
    (outputs / f"square-{n}.txt").write_text(f"{n}^2 = {n * n}\n")

# A batched task answers one result per item, in order; a single task answers one object.
results = [{"n": n, "square": n * n} for n in numbers]
result_file = os.environ.get("COMPUTALOT_TASK_RESULT")
if result_file:
    pathlib.Path(result_file).write_text(json.dumps(results if "_batch" in payload else results[0]))
