#!/usr/bin/env bash
# Regenerate go.mod/go.sum for the wrapper module from the go.mod that the Go
# module proxy serves for k8s.io/kubernetes. Run once per Kubernetes version,
# then commit go.mod and go.sum (build.sh builds from them read-only).
set -euo pipefail
K8S_VERSION="${K8S_VERSION:-1.36.3}"          # no leading "v"
STAGING_VERSION="v0.${K8S_VERSION#1.}"         # 1.36.3 -> v0.36.3
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
cd "$(dirname "$0")"
rm -f go.mod go.sum
go mod init k8s-harness

# the go.mod of k8s.io/kubernetes as served by the proxy
KMOD=$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
kjson() { go mod edit -json "$KMOD" | python3 -c "import json,sys; m=json.load(sys.stdin); $1"; }

go mod edit -require="k8s.io/kubernetes@v${K8S_VERSION}"
# every k8s.io/* module required at the placeholder v0.0.0 is a staging module
for mod in $(kjson 'print("\n".join(r["Path"] for r in m.get("Require") or [] if r["Version"]=="v0.0.0"))'); do
  go mod edit -replace="${mod}=${mod}@${STAGING_VERSION}"
done
# same language version and GODEBUG defaults as upstream
go mod edit -go="$(kjson 'print(m["Go"])')"
for kv in $(kjson 'print("\n".join(g["Key"]+"="+g["Value"] for g in m.get("Godebug") or []))'); do
  go mod edit -godebug="$kv"
done
go mod tidy
go list -m k8s.io/kubernetes k8s.io/api go.etcd.io/etcd/server/v3
