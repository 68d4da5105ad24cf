#!/usr/bin/env bash
# Runs at image build time, in /app, with only .cycleswap/ and the build_files present.
# Re-runs only when this script or a build file changes (see `cycle project hash --explain`).
set -euo pipefail

# Install what the job needs, e.g.:
# apt-get update -qq && apt-get install -y -qq jq && rm -rf /var/lib/apt/lists/*
echo "build: nothing to install"
