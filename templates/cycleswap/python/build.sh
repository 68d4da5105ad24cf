#!/usr/bin/env bash
# Runs at image build time, in /app, with only .cycleswap/ and the build_files present.
# Re-runs only when this script or a build file changes (see `cycle project hash --explain`).
set -euo pipefail

apt-get update -qq && apt-get install -y -qq curl && rm -rf /var/lib/apt/lists/*
curl -LsSf https://astral.sh/uv/install.sh | sh

export PATH="$HOME/.local/bin:$PATH"

uv sync
