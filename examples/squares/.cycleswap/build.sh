#!/usr/bin/env bash
# Runs at image build time in /app, with .cycleswap/ and requirements.txt only.
set -euo pipefail
if ! command -v python3 >/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3 && rm -rf /var/lib/apt/lists/*
fi
echo "build: python3 is $(python3 --version 2>&1); requirements: $(grep -vc '^#' requirements.txt || true) packages"
