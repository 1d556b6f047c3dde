#!/usr/bin/env bash
# The Kubernetes test clusters: etcd, kube-apiserver and
# kube-controller-manager for the API-server tests, and kube-scheduler,
# kubelet, kube-proxy and CoreDNS for the real-node tests, built from the Go
# module proxy (tools/k8s-harness) into a cache outside the repository (a
# cached build is reused); containerd, runc, the CNI plugins, the registry and
# the firewall tools from Debian.
source "$(dirname "$0")/../lib.sh"
need go "install Go 1.26 or newer (the Kubernetes 1.36 build needs it)"
apt_install openssl containerd runc containernetworking-plugins docker-registry nftables \
  iptables socat gcc libc6-dev
need kubectl "install kubectl (the machine image ships it)"
say "Kubernetes test cluster binaries"
KUBELESS_CACHE="$CACHE" bash "$ROOT/tools/k8s-harness/build.sh" >/dev/null
