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
NODE_RUN="$ROOT/target/k8s-node"
cleanup() {
  bash "$ROOT/tools/k8s-harness/down.sh" "$K8S_RUN"
  bash "$ROOT/tools/k8s-harness/node-down.sh" "$NODE_RUN" >/dev/null
}
trap cleanup EXIT
export KUBECONFIG
KUBECONFIG="$(bash "$ROOT/tools/k8s-harness/up.sh" "$K8S_RUN")"
export REQUIRE_K8S=1
say "cargo test"
# the real-node tests (real_node_*) run below, against a cluster with a kubelet
cargo test --workspace --no-fail-fast -- --skip real_node_
bash "$ROOT/tools/k8s-harness/down.sh" "$K8S_RUN"

say "Kubernetes mode on a real node: cluster, images, tests"
KUBECONFIG="$(bash "$ROOT/tools/k8s-harness/node-up.sh" "$NODE_RUN")"
bash "$ROOT/scripts/k8s-images.sh" --every-version 127.0.0.1:5055
export REQUIRE_K8S_NODE=1
# every real_node_ test of the e2e crate side by side, then on their own
# the build step (a cluster-wide setting) and uninstall (it removes Kubeless)
cargo test -p kubeless-e2e --no-fail-fast -- --nocapture real_node_ \
  --skip real_node_build_step --skip real_node_uninstall
cargo test -p kubeless-e2e --test k8s_node_build -- --nocapture
cargo test -p kubeless-e2e --test k8s_node_uninstall -- --nocapture
