#!/usr/bin/env bash
# Set up and run every test: formatting, lints, unit, integration and
# end-to-end tests against real components. Fails (never skips) when a
# component is missing.
source "$(dirname "$0")/lib.sh"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
say "cargo test"
cargo test --workspace --no-fail-fast
