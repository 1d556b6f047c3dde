#!/usr/bin/env bash
# Build the test cluster's binaries from the committed go.mod/go.sum files
# into a cache directory outside the repository, keyed by the Kubernetes
# version, the Go version and both go.sum files. Prints the directory.
# Idempotent: a complete cached build is reused.
#
# The control plane (etcd, kube-apiserver, kube-controller-manager) serves
# the API-server tests; the node (kube-scheduler, kubelet, kube-proxy, and
# CoreDNS from its own module in coredns/, which needs newer client
# libraries than the pinned Kubernetes ones) serves the real-node tests, and
# so do the node's Ingress controller and metrics pipeline: Traefik
# (traefik/) and metrics-server (metrics-server/), each a module of its own
# for the same reason, built from the upstream main package their go.mod
# names as a tool.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${KUBELESS_CACHE:-$HOME/.cache/kubeless-dev}"
cd "$HERE"
export GOTOOLCHAIN=local
V=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
V=${V#v}
KEY="v$V-$(go env GOVERSION)-$(cat go.sum coredns/go.sum traefik/go.sum metrics-server/go.sum |
  sha256sum | cut -c1-12)"
BIN="${K8S_HARNESS_BIN:-$CACHE/k8s-harness/$KEY}"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy coredns
  traefik metrics-server)
complete() { for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || return 1; done; }
if complete; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN"
LDFLAGS="-s -w"
for kv in gitVersion=v$V gitMajor=1 gitMinor=$(cut -d. -f2 <<<"$V") gitTreeState=clean \
  gitCommit=0000000000000000000000000000000000000000 buildDate=1970-01-01T00:00:00Z; do
  LDFLAGS+=" -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
done
# -p 2 by default: the machine is shared; K8S_HARNESS_JOBS overrides.
JOBS="${K8S_HARNESS_JOBS:-2}"
# build into a temporary directory and move into place so that an interrupted
# build never leaves a half-written binary that looks complete
TMP="$(mktemp -d "$BIN/.build.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
for b in "${BINARIES[@]}"; do
  [ -x "$BIN/$b" ] && continue
  echo "building $b with $(go env GOVERSION) (-p $JOBS)" >&2
  if [ "$b" = coredns ]; then
    (cd coredns && CGO_ENABLED=0 go build -mod=readonly -trimpath -buildvcs=false -p "$JOBS" \
      -ldflags "-s -w" -o "$TMP/$b" .)
  elif [ "$b" = traefik ]; then
    (cd traefik && m=github.com/traefik/traefik/v3 && tv=$(go list -m -f '{{.Version}}' $m) &&
      CGO_ENABLED=0 go build -mod=readonly -trimpath -buildvcs=false -p "$JOBS" \
        -ldflags "-s -w -X $m/pkg/version.Version=$tv" -o "$TMP/$b" "$m/cmd/traefik")
  elif [ "$b" = metrics-server ]; then
    (cd metrics-server && m=sigs.k8s.io/metrics-server && mv=$(go list -m -f '{{.Version}}' $m) &&
      CGO_ENABLED=0 go build -mod=readonly -trimpath -buildvcs=false -p "$JOBS" \
        -ldflags "-s -w -X k8s.io/client-go/pkg/version.gitVersion=$mv" -o "$TMP/$b" "$m/cmd/$b")
  else
    CGO_ENABLED=0 go build -mod=readonly -trimpath -buildvcs=false -p "$JOBS" \
      -ldflags "$LDFLAGS" -o "$TMP/$b" "./cmd/$b"
  fi
  mv "$TMP/$b" "$BIN/$b"
done
echo "$BIN"
