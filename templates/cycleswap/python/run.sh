#!/usr/bin/env bash
# The job: runs in /app (your project files) with `bash .cycleswap/run.sh`.
# Non-zero exit = failed job. Files written to /artifacts are the job's artifacts.
set -euo pipefail

export PATH="$HOME/.local/bin:$PATH"

uv run main.py
