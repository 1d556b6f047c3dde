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
say "starting the Kubernetes test control plane"
K8S_RUN="$ROOT/target/k8s-harness"
trap 'bash "$ROOT/tools/k8s-harness/down.sh" "$K8S_RUN"' EXIT
export KUBECONFIG
KUBECONFIG="$(bash "$ROOT/tools/k8s-harness/up.sh" "$K8S_RUN")"
export REQUIRE_K8S=1
say "cargo test"
cargo test --workspace --no-fail-fast
