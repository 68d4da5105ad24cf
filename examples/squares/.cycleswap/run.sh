#!/usr/bin/env bash
# The job: runs in /app with the project source copied in.
set -euo pipefail
python3 main.py
