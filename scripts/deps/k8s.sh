#!/usr/bin/env bash
# etcd, kube-apiserver and kube-controller-manager for the Kubernetes-mode
# tests, built from the Go module proxy (tools/k8s-harness) into a cache
# outside the repository; a cached build is reused.
source "$(dirname "$0")/../lib.sh"
need go "install Go 1.26 or newer (the Kubernetes 1.36 build needs it)"
need openssl "apt-get install openssl"
say "Kubernetes test control plane binaries"
KUBELESS_CACHE="$CACHE" bash "$ROOT/tools/k8s-harness/build.sh" >/dev/null
