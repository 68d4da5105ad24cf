"""The job's entry point: `uv run main.py`, started by .cycleswap/run.sh in /app."""

import json
import os
import pathlib


def main() -> None:
    payload_file = os.environ.get("COMPUTALOT_TASK_PAYLOAD", "")
    payload = json.loads(pathlib.Path(payload_file).read_text()) if payload_file else {}
    where = "a container" if os.environ.get("INSIDE_CYCLESWAP_CONTAINER") == "1" else "this machine"
    print(f"hello from {where}; payload: {payload}", flush=True)

    # Files under /artifacts are the job's artifacts, captured while it runs.
    artifacts = pathlib.Path(os.environ.get("CYCLE_ARTIFACTS_DIR", "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "hello.txt").write_text("hello\n")

    result_file = os.environ.get("COMPUTALOT_TASK_RESULT")
    if result_file:
        pathlib.Path(result_file).write_text(json.dumps({"ok": True, "payload": payload}))


if __name__ == "__main__":
    main()
