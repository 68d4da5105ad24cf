"""A task: reads its payload, reports progress, writes its result (the runner protocol)."""

import json
import os
import pathlib


def main() -> None:
    payload = json.loads(pathlib.Path(os.environ["COMPUTALOT_TASK_PAYLOAD"]).read_text())
    steps = int(payload.get("steps", 3))
    total = 0
    for step in range(1, steps + 1):
        total += step
        print("COMPUTALOT_PROGRESS:" + json.dumps({"step": step, "of": steps}), flush=True)

    artifacts = pathlib.Path(os.environ.get("CYCLE_ARTIFACTS_DIR", "/artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "summary.txt").write_text(f"sum of 1..{steps} = {total}\n")

    result = {"sum": total, "payload": payload}
    pathlib.Path(os.environ["COMPUTALOT_TASK_RESULT"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
