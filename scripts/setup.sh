#!/usr/bin/env bash
# Sets up this machine for cycle's demo and test suite, idempotently:
#   - Docker (Debian's docker.io) and debootstrap, when missing;
#   - pigz, when missing (`npm run bench -- pack` measures `tar -c . | pigz -p2` beside `project pack`);
#   - chromium, when missing (test/browser and `npm run bench -- web` drive it with playwright-core);
#   - a running Docker daemon (started here, without the default bridge network, when none runs);
#   - gVisor (runsc), registered as a Docker runtime;
#   - a small local base image, tagged as the ubuntu:<version> images the tests use (only where
#     no such image exists: a real ubuntu image on this machine is never replaced);
#   - the npm dependencies and the build (npm ci runs `prepare`, which compiles to dist/).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  log "installing docker.io and debootstrap from Debian"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi

if ! command -v pigz >/dev/null 2>&1; then
  log "installing pigz from Debian (the pack benchmark's baseline)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pigz >/dev/null
fi

if ! command -v chromium >/dev/null 2>&1; then
  log "installing chromium from Debian (the web page's browser tests and bench drive it with playwright-core)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (no default bridge: containers get no network unless --network host)"
  as_root sh -c 'nohup dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false >/tmp/cycle-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see /tmp/cycle-dockerd.log"; tail -20 /tmp/cycle-dockerd.log >&2; exit 1; }
fi

# gVisor for jobs whose manifest asks for "sandbox": "gvisor": Debian's runsc, registered as the
# Docker runtime "runsc" (merged into an existing /etc/docker/daemon.json, never replacing it;
# --network=none: jobs have no network unless asked, and runsc's netstack needs none here).
if ! command -v runsc >/dev/null 2>&1; then
  log "installing runsc (gVisor) from Debian"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc >/dev/null
fi
if ! docker info --format '{{json .Runtimes}}' | grep -q '"runsc"'; then
  log "registering runsc as a Docker runtime in /etc/docker/daemon.json, then reloading dockerd"
  as_root mkdir -p /etc/docker
  as_root "$(command -v node)" -e '
    const fs = require("node:fs");
    const [file, runsc] = process.argv.slice(1);
    const config = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8") || "{}") : {};
    config.runtimes = { ...config.runtimes, runsc: { path: runsc, runtimeArgs: ["--platform=ptrace", "--network=none"] } };
    fs.writeFileSync(file, JSON.stringify(config, null, 2) + "\n");
  ' /etc/docker/daemon.json "$(command -v runsc)"
  as_root kill -HUP "$(pidof dockerd)"
  for _ in $(seq 1 20); do docker info --format '{{json .Runtimes}}' | grep -q '"runsc"' && break; sleep 0.5; done
  docker info --format '{{json .Runtimes}}' | grep -q '"runsc"' || { log "dockerd did not take the runsc runtime; see /etc/docker/daemon.json"; exit 1; }
fi

BASE=cycle-test-base:bookworm
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  mirror=$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
  mirror=${mirror:-http://deb.debian.org/debian}
  rootfs=$(mktemp -d /tmp/cycle-rootfs.XXXXXX)
  log "building the base image $BASE with debootstrap from $mirror (about a minute)"
  as_root debootstrap --variant=minbase --include=python3 bookworm "$rootfs" "$mirror" >/tmp/cycle-debootstrap.log 2>&1 \
    || { tail -20 /tmp/cycle-debootstrap.log >&2; exit 1; }
  as_root tar -C "$rootfs" -c . | docker import - "$BASE" >/dev/null
  as_root rm -rf "$rootfs"
fi
for version in 22.04 24.04 25.04 25.10 26.04; do
  if ! docker image inspect "ubuntu:$version" >/dev/null 2>&1; then docker tag "$BASE" "ubuntu:$version"; fi
done

if [ package-lock.json -nt node_modules/.package-lock.json ] || [ ! -d node_modules ]; then
  log "installing npm packages (npm ci) and building"
  npm ci --no-audit --no-fund >/dev/null
else
  npm run --silent build
fi
log "ready: $(docker version --format 'Docker {{.Server.Version}}'), node $(node --version)"
