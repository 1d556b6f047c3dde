#!/usr/bin/env bash
# Set up everything the project needs on this machine; a second run is quick.
# Usage: scripts/setup.sh [--release]
source "$(dirname "$0")/lib.sh"

need cargo "install Rust from https://rustup.rs"
need python3 "install Python 3 (apt-get install python3 python3-pip)"
need node "install Node.js 18 or newer (apt-get install nodejs npm)"
need npm "install npm (apt-get install npm)"

# Per-component installers (language runtimes, brokers, registries, the
# Kubernetes test clusters, the benchmark's peers). The run command
# (--release, scripts/up.sh) needs only the sandbox tool: the rest serves
# the tests and is installed by scripts/test.sh, or one at a time with
# scripts/deps/<name>.sh.
if [ "${1:-}" = "--release" ]; then
  deps=("$ROOT/scripts/deps/sandbox.sh")
else
  deps=("$ROOT"/scripts/deps/*.sh)
fi
for f in "${deps[@]}"; do
  [ -e "$f" ] || continue
  bash "$f"
done

cd "$ROOT"
if [ "${1:-}" = "--release" ]; then
  say "building kubeless (release)"
  cargo build --release --workspace --bins
else
  say "building kubeless"
  cargo build --workspace --bins
fi
