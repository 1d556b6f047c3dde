#!/usr/bin/env bash
# Stop the control plane started by up.sh: exactly the recorded pids, in
# reverse start order, then remove its run directory.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RUN="${1:-${K8S_HARNESS_RUN:-$ROOT/target/k8s-harness}}"
[ -d "$RUN" ] || exit 0
for c in kcm apiserver etcd; do
  f="$RUN/$c.pid"
  [ -e "$f" ] || continue
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$f"
done
rm -rf "$RUN"
